//! Helpers shared by the integration tests.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Arc, Mutex, OnceLock};

use edge_fer::{FaceFinder, FaceFinderConfig};

pub mod serving;

/// Writes `pattern` as 640x480 frames into a new folder: true, Grace Hopper's portrait (300 px,
/// moving 2 px right each frame) over grey; false, grey alone.
pub fn face_frames(pattern: &[bool]) -> tempfile::TempDir {
    let portrait = image::open(fixture("grace_hopper_512x512.jpg"))
        .unwrap()
        .to_rgb8();
    let portrait =
        image::imageops::resize(&portrait, 300, 300, image::imageops::FilterType::Triangle);
    let dir = tempfile::tempdir().unwrap();
    for (i, &face) in pattern.iter().enumerate() {
        let mut frame = image::RgbImage::from_pixel(640, 480, image::Rgb([90, 90, 90]));
        if face {
            image::imageops::overlay(&mut frame, &portrait, 150 + 2 * i as i64, 80);
        }
        frame.save(dir.path().join(format!("{i:03}.png"))).unwrap();
    }
    dir
}

/// A photo in tests/fixtures/.
pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// A file under the repository root.
pub fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// The portraits, each with exactly one frontal face.
pub const PORTRAITS: [&str; 3] = ["astronaut.png", "grace_hopper_512x512.jpg", "biden.jpg"];
/// A landscape with no face.
pub const LANDSCAPE: &str = "640px-IceBlockNearJoekullsarlon.jpg";

/// The HOG face finder, loaded once for all tests (loading takes seconds).
pub fn with_finder<T>(f: impl FnOnce(&FaceFinder) -> T) -> T {
    static FINDER: OnceLock<Mutex<FaceFinder>> = OnceLock::new();
    let finder = FINDER.get_or_init(|| {
        Mutex::new(FaceFinder::load(&FaceFinderConfig::default()).expect("loading dlib models"))
    });
    let guard = finder.lock().unwrap_or_else(|e| e.into_inner());
    f(&guard)
}

/// Runs the built binary with `args`.
pub fn edge_fer(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_edge-fer"))
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .expect("running edge-fer")
}

/// Runs the binary with `args` plus `flag value` and checks clap refused it (status 2) with a
/// message naming the flag and saying `says`.
pub fn assert_refused(args: &[&str], flag: &str, value: &str, says: &str) {
    let mut all = args.to_vec();
    all.extend([flag, value]);
    let out = edge_fer(&all);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{flag} {value}: {err}");
    assert!(
        err.contains(flag) && err.contains(says),
        "{flag} {value}: {err}"
    );
}

/// stdout's lines parsed as JSON.
pub fn json_lines(out: &Output) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l:?}: {e}")))
        .collect()
}

/// stderr as text.
pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A copy of the shipped model folder in a temporary directory, to damage in a test.
pub fn model_copy() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    for f in ["model.json", "model.onnx"] {
        std::fs::copy(
            repo("models/fer2013-mini-xception").join(f),
            dir.path().join(f),
        )
        .unwrap();
    }
    let card = dir.path().join("model.json");
    (dir, card)
}

/// Writes the first `1 / parts` of `from`'s bytes to `to` (the two may be the same file), as a
/// download or copy cut short leaves it; returns the bytes written.
pub fn write_truncated(from: &Path, to: &Path, parts: usize) -> Vec<u8> {
    let mut bytes = std::fs::read(from).unwrap();
    bytes.truncate(bytes.len() / parts);
    std::fs::write(to, &bytes).unwrap();
    bytes
}

/// Reads, edits and writes back a JSON file.
pub fn edit_json(path: &Path, edit: impl FnOnce(&mut serde_json::Value)) {
    let mut v: serde_json::Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    edit(&mut v);
    std::fs::write(path, serde_json::to_vec_pretty(&v).unwrap()).unwrap();
}

/// Collects what the pipeline writes, for tests to read back.
#[derive(Clone, Default)]
pub struct Captured(pub Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    /// The lines written, parsed as JSON.
    pub fn lines(&self) -> Vec<serde_json::Value> {
        String::from_utf8(self.0.lock().unwrap().clone())
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// The `frame` number of each line written.
    pub fn frames(&self) -> Vec<u64> {
        self.lines()
            .iter()
            .map(|l| l["frame"].as_u64().unwrap())
            .collect()
    }
}
