//! Writes dlib's built-in frontal face detector, serialised, to a file: the
//! `models/dlib-hog-frontal/` model (run by its export.sh).
//!
//! ```sh
//! cargo run --release --example export_hog -- OUT.dat
//! ```

use anyhow::Context;

fn main() -> anyhow::Result<()> {
    let out = std::env::args()
        .nth(1)
        .context("usage: export_hog OUT.dat")?;
    let bytes = edge_fer::hog::HogDetector::export_dlibs_own().context("dlib failed to export")?;
    std::fs::write(&out, &bytes).with_context(|| format!("writing {out}"))?;
    println!(
        "{out}: {} bytes, sha256 {}",
        bytes.len(),
        edge_fer::checksum::sha256_hex(&bytes)
    );
    Ok(())
}
