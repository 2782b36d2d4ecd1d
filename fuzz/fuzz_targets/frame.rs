//! Arbitrary bytes as an image file through the whole per-frame path: decode, HOG detection and
//! 68 landmarks, alignment, classification, and the JSON line. Nothing may panic; a bad file must
//! come back as an error result.
#![no_main]

use edge_fer::capture::decode_image_bytes;
use edge_fer::output::{write_result, Format};
use edge_fer::pipeline::process_frame;
use edge_fer::{Classifier, FaceFinder, FaceFinderConfig, Frame};
use libfuzzer_sys::fuzz_target;

thread_local! {
    // libFuzzer runs the target on one thread; dlib's detector is not Sync.
    static MODELS: (FaceFinder, Classifier) = (
        FaceFinder::load(&FaceFinderConfig::default()).expect("dlib models (run ./setup)"),
        Classifier::builtin().expect("built-in model"),
    );
}

fuzz_target!(|bytes: &[u8]| {
    let Ok(rgb) = decode_image_bytes(bytes) else {
        return;
    };
    // Frames larger than a camera's are legal but make the fuzzer slow without finding more.
    if u64::from(rgb.width()) * u64::from(rgb.height()) > 1 << 20 {
        return;
    }
    let frame = Frame {
        rgb,
        index: 0,
        timestamp_ms: 0,
        time_s: 0.0,
        source: "fuzz".into(),
    };
    let result = MODELS.with(|(finder, classifier)| process_frame(Some(finder), classifier, frame));
    let mut line = Vec::new();
    write_result(&mut line, &result, Format::Json).expect("writing to memory");
    assert!(line.ends_with(b"\n"));
});
