//! Builds edge-fer's C++ glue (src/native/) against the system's dlib (Debian's libdlib-dev,
//! which ./setup installs; cross/build points the compiler at the arm64 one).
fn main() {
    println!("cargo:rerun-if-changed=src/native/hog.cpp");
    cc::Build::new()
        .cpp(true)
        .file("src/native/hog.cpp")
        .flag("-std=c++14")
        // dlib's detector is header templates instantiated here: unoptimised, the tests'
        // detections would crawl (the same reason Cargo.toml optimises dependencies in dev).
        .opt_level(3)
        .debug(false)
        .warnings(false)
        .compile("edge_fer_native");
    println!("cargo:rustc-link-lib=dlib");
}
