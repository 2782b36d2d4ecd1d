//! Writes the aligned crops the model sees for each face in the given images, scaled up 4x,
//! as `<image>.face<N>.png` in the current folder: a quick way to check a card's template.
//!
//! `cargo run --example aligned_crops -- [--model CARD] IMAGE...`

use std::path::PathBuf;

fn main() -> anyhow::Result<()> {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let classifier = if args.first().map(String::as_str) == Some("--model") {
        let card = PathBuf::from(args.get(1).cloned().unwrap_or_default());
        args.drain(..2);
        edge_fer::Classifier::load(&card)?
    } else {
        edge_fer::Classifier::builtin()?
    };
    let finder = edge_fer::FaceFinder::load(&edge_fer::FaceFinderConfig::default())?;
    for arg in args {
        let path = PathBuf::from(&arg);
        let rgb = edge_fer::capture::decode_image(&path)?;
        for (i, face) in finder.find(&rgb).iter().enumerate() {
            let mut crop = classifier.blank_crop();
            edge_fer::align::align(
                &rgb,
                &face.landmarks,
                &classifier.card().alignment,
                &mut crop,
            )?;
            let (w, h) = crop.dimensions();
            let big =
                image::imageops::resize(&crop, w * 4, h * 4, image::imageops::FilterType::Nearest);
            let name = format!(
                "{}.face{i}.png",
                path.file_name().unwrap_or_default().to_string_lossy()
            );
            big.save(&name)?;
            println!("{name}");
        }
    }
    Ok(())
}
