//! The shipped model under tract, checked against onnxruntime, and the card's validation.

use edge_fer::classify::BUILTIN_ONNX;
use edge_fer::{Classifier, Error};

use crate::util::{edit_json, model_copy, repo};

#[test]
fn tract_reproduces_the_onnxruntime_reference() {
    let card = repo("models/fer2013-mini-xception/model.json");
    let classifier = Classifier::load(&card).unwrap();
    let reference: serde_json::Value = serde_json::from_slice(
        &std::fs::read(repo("models/fer2013-mini-xception/reference.json")).unwrap(),
    )
    .unwrap();
    let floats = |key: &str| -> Vec<f32> {
        reference[key]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap() as f32)
            .collect()
    };
    let (input, expected) = (floats("input"), floats("output"));
    let batch = reference["input_shape"][0].as_u64().unwrap() as usize;
    assert_eq!(reference["input_name"], classifier.card().input.name);
    let got = classifier.run_raw(&input, batch).unwrap();
    assert_eq!(got.len(), expected.len());
    for (i, (g, e)) in got.iter().zip(&expected).enumerate() {
        assert!(
            (g - e).abs() < 1e-4,
            "output {i}: tract {g}, onnxruntime {e}"
        );
    }
}

#[test]
fn builtin_model_is_the_shipped_file() {
    let shipped = std::fs::read(repo("models/fer2013-mini-xception/model.onnx")).unwrap();
    assert!(
        shipped == BUILTIN_ONNX,
        "rebuild after changing models/fer2013-mini-xception"
    );
}

#[test]
fn input_shape_that_disagrees_with_the_card_is_refused() {
    let (_dir, card) = model_copy();
    edit_json(&card, |v| {
        v["input"]["height"] = 48.into();
        v["input"]["width"] = 48.into();
    });
    let err = Classifier::load(&card).unwrap_err();
    assert!(matches!(err, Error::CardMismatch { .. }), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("input shape") && msg.contains("48") && msg.contains("64"),
        "{msg}"
    );
    assert!(msg.contains("model.onnx"), "{msg}");
}

#[test]
fn label_count_that_disagrees_with_the_output_is_refused() {
    let (_dir, card) = model_copy();
    edit_json(&card, |v| {
        v["labels"].as_array_mut().unwrap().push("contempt".into());
    });
    let msg = Classifier::load(&card).unwrap_err().to_string();
    assert!(msg.contains("output shape") && msg.contains("8"), "{msg}");
}

#[test]
fn wrong_tensor_names_are_refused() {
    let (_dir, card) = model_copy();
    edit_json(&card, |v| v["input"]["name"] = "pixels".into());
    let msg = Classifier::load(&card).unwrap_err().to_string();
    assert!(
        msg.contains("input name") && msg.contains("pixels") && msg.contains("input_1:0"),
        "{msg}"
    );
}
