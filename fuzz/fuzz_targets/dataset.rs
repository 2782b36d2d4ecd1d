//! Arbitrary bytes as a dataset's label files, for each reader the trainer has (RAF-DB's list,
//! FERPlus's two CSVs, AffectNet's CSV, a `train prepare` cache's index): see
//! `train::data::replay::read_bytes`. Every reader must load or refuse with an error naming the
//! file; bad lines are skipped with a reason, never a panic.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;

fn dir() -> &'static tempfile::TempDir {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| tempfile::tempdir().expect("temp dir"))
}

fuzz_target!(|input: &[u8]| {
    // The reader's verdict does not matter here, only that it comes without a panic.
    let _ = train::data::replay::read_bytes(input, dir().path()).expect("writing the temp files");
});
