//! Arbitrary text as a model card: parsing and validation must refuse bad cards with an error,
//! never panic, and whatever they accept must be usable (the template and input size).
#![no_main]

use std::path::Path;

use edge_fer::ModelCard;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    let text = String::from_utf8_lossy(bytes);
    if let Ok(card) = ModelCard::from_json(&text, Path::new("fuzz/model.json")) {
        assert!(!card.labels.is_empty());
        let _ = card
            .alignment
            .template_px(card.input.width, card.input.height);
        let _ = card.model_path(Path::new("fuzz/model.json"));
    }
});
