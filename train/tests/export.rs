//! `train export`: a briefly trained model, exported, run by the runtime (tract) with the same
//! logits as burn, and classifying the run's aligned test crops through the runtime's pipeline
//! with the accuracy `train eval` reports.

use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex};

mod common;

use burn::prelude::Device;
use train::config::{ContrastiveConfig, DataConfig, Method, TrainingConfig};
use train::fit::fit;
use train::model::lanet::ArmOptions;
use train::run_dir::RunDir;

/// A width-4 network trained for two short epochs into `run`.
fn small_run(run: &RunDir) -> TrainingConfig {
    let small = common::small();
    let config = small
        .clone()
        .with_model(small.model.clone().with_width(4))
        .with_data(DataConfig::new().with_train_faces(140).with_test_faces(70))
        .with_epochs(2)
        .with_contrastive(ContrastiveConfig::new().with_queue(70));
    fit(&config, run, &Device::flex().autodiff(), false).unwrap();
    config
}

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn exported_model_matches_burn_and_scores_like_eval_through_the_runtime() {
    let dir = tempfile::tempdir().unwrap();
    let run = RunDir::new(dir.path());
    small_run(&run);
    let out = tempfile::tempdir().unwrap();
    let model_dir = out.path().join("synthetic-lanet");
    let report = train::export::export(&run, None, &model_dir, "synthetic-lanet").unwrap();
    // Parity at batch 1 and batch 4, to 1e-4, same argmax.
    assert_eq!(
        report.max_abs_diff.iter().map(|d| d.0).collect::<Vec<_>>(),
        [1, 4]
    );
    for (batch, diff) in &report.max_abs_diff {
        assert!(*diff <= 1e-4, "batch {batch}: {diff}");
    }
    assert!(report.same_argmax);

    // The card is what the runtime expects and names what went into the model.
    let card_path = model_dir.join("model.json");
    let classifier = edge_fer::Classifier::load(&card_path).unwrap();
    let card = classifier.card();
    assert_eq!(card.input.name, "images");
    assert_eq!(card.output.name, "logits");
    assert_eq!((card.input.width, card.input.height), (64, 64));
    assert_eq!(card.labels.len(), 7);
    assert_eq!(card.labels[3], "happiness");
    assert_eq!(
        card.sha256,
        edge_fer::checksum::sha256_hex(&std::fs::read(model_dir.join("model.onnx")).unwrap())
    );
    assert!(card.provenance.contains_key("eval_accuracy"));
    // No landmark branch: the ONNX's weights are the inference path's only.
    let proto = <onnx_ir::ModelProto as onnx_ir::Message>::parse_from_bytes(
        &std::fs::read(model_dir.join("model.onnx")).unwrap(),
    )
    .unwrap();
    let graph = proto.graph.as_ref().unwrap();
    let names: Vec<&str> = graph.initializer.iter().map(|t| t.name.as_str()).collect();
    assert!(names.iter().any(|n| n.starts_with("expr.")), "{names:?}");
    assert!(
        names.iter().any(|n| n.starts_with("classifier.")),
        "{names:?}"
    );
    assert!(
        !names.iter().any(|n| n.starts_with("landmark")
            || n.starts_with("lateral")
            || n.starts_with("heatmap")),
        "{names:?}"
    );
    assert_eq!(graph.input[0].name, "images");
    assert_eq!(graph.output[0].name, "logits");

    // End to end on a real photo (detection, alignment with the card's template, tract).
    let mut photo = edge_fer::capture::ImageFiles::new(vec![
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/astronaut.png")
    ]);
    let captured = Captured::default();
    let stats = edge_fer::pipeline::run(
        &mut photo,
        Some(edge_fer::FaceFinder::load(&Default::default()).unwrap()),
        edge_fer::Classifier::load(&card_path).unwrap(),
        Box::new(captured.clone()),
        &edge_fer::pipeline::PipelineConfig::default(),
    )
    .unwrap();
    assert_eq!((stats.faces, stats.failed), (1, 0));
    let line: serde_json::Value = serde_json::from_slice(&captured.0.lock().unwrap()).unwrap();
    let probs = line["faces"][0]["probs"].as_object().unwrap();
    assert_eq!(probs.len(), 7);
    assert!(probs.contains_key("happiness"));

    // The run's clean test crops through the runtime's pipeline in aligned mode give eval's
    // accuracy.
    let crops = out.path().join("crops");
    let n = train::export::write_test_crops(&run, &crops).unwrap();
    assert_eq!(n, 70);
    let mut files: Vec<_> = walk(&crops);
    files.sort();
    let mut source = edge_fer::capture::ImageFiles::new(files.clone());
    let captured = Captured::default();
    let stats = edge_fer::pipeline::run(
        &mut source,
        None,
        classifier,
        Box::new(captured.clone()),
        &edge_fer::pipeline::PipelineConfig::default(),
    )
    .unwrap();
    assert_eq!(stats.faces, 70);
    let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    let mut correct = 0;
    for (line, file) in text.lines().zip(&files) {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let label = v["faces"][0]["label"].as_str().unwrap();
        let truth = file
            .parent()
            .unwrap()
            .file_name()
            .unwrap()
            .to_str()
            .unwrap();
        correct += usize::from(label == truth);
        assert!(v["faces"][0].get("landmarks").is_none());
    }
    let runtime_accuracy = correct as f64 / 70.0;
    let eval = train::eval::evaluate(&run, &Device::flex()).unwrap();
    assert!(
        (runtime_accuracy - eval.accuracy).abs() <= 0.005,
        "runtime {runtime_accuracy} vs eval {}",
        eval.accuracy
    );
}

#[test]
fn an_arm_model_exports_its_pooling_and_tract_matches_burn_at_batch_1_and_4() {
    // 96x96 input: a 3x3 last map, so the de-albino kernel (2x2) weighs the border less.
    let dir = tempfile::tempdir().unwrap();
    let run = RunDir::new(dir.path());
    let small = common::small();
    let model = small
        .model
        .clone()
        .with_input_size(96)
        .with_width(4)
        .with_arm(Some(ArmOptions::new()));
    let config = small
        .with_method(Method::Ce)
        .with_model(model)
        .with_data(DataConfig::new().with_train_faces(140).with_test_faces(70))
        .with_epochs(1);
    fit(&config, &run, &Device::flex().autodiff(), false).unwrap();
    let out = tempfile::tempdir().unwrap();
    let report = train::export::export(&run, None, out.path(), "arm").unwrap();
    // check_parity runs burn's inference path and tract on the same crops at batch 1 and 4.
    for (batch, diff) in &report.max_abs_diff {
        assert!(*diff <= 1e-4, "batch {batch}: {diff}");
    }
    assert!(report.same_argmax);
    let proto = <onnx_ir::ModelProto as onnx_ir::Message>::parse_from_bytes(
        &std::fs::read(out.path().join("model.onnx")).unwrap(),
    )
    .unwrap();
    let graph = proto.graph.as_ref().unwrap();
    let names: Vec<&str> = graph.initializer.iter().map(|t| t.name.as_str()).collect();
    // The de-albino weights are in the graph; the kernel, alpha and running mean are not (they
    // were folded into the weights and the classifier's bias).
    assert!(
        names.iter().any(|n| n.contains("pool_weights")),
        "{names:?}"
    );
    assert!(!names.iter().any(|n| n.starts_with("arm")), "{names:?}");
}

#[test]
fn training_and_the_runtime_feed_the_network_the_same_tensor_for_a_real_photo() {
    // The runtime: detect, align to the card's template, normalise with the card's settings.
    let photo = edge_fer::capture::decode_image(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/astronaut.png"),
    )
    .unwrap();
    let finder = edge_fer::FaceFinder::load(&Default::default()).unwrap();
    let face = finder.find(&photo).remove(0);
    let alignment = edge_fer::align::Alignment::builtin();
    let spec = train::training::input_spec(64);
    let norm = train::training::normalisation();
    let mut crop = image::RgbImage::new(64, 64);
    edge_fer::align::align(&photo, &face.landmarks, &alignment, &mut crop).unwrap();
    let mut runtime = vec![0.0f32; 3 * 64 * 64];
    edge_fer::classify::normalise_into(&crop, &spec, &norm, &mut runtime).unwrap();

    // Training: the same photo through prepare's alignment and a batch without augmentation.
    let aligned = train::training::align_face(&photo, &face.landmarks.0, &alignment, 64).unwrap();
    let device = Device::flex();
    let batch = train::training::make_batch(
        &[&aligned],
        vec![0],
        vec![0],
        &[train::augment::Plan::identity(64)],
        &device,
    );
    let trained: Vec<f32> = batch
        .images
        .into_data()
        .convert::<f32>()
        .try_to_vec::<f32>()
        .unwrap();
    assert_eq!(trained, runtime);
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[test]
fn export_refuses_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let run = RunDir::new(dir.path());
    let out = tempfile::tempdir().unwrap();
    let export = |checkpoint: Option<&Path>, out: &Path| {
        let e = train::export::export(&run, checkpoint, out, "x").unwrap_err();
        format!("{e:#}")
    };
    // No run at all.
    let e = export(None, out.path());
    assert!(e.contains("config.json"), "{e}");

    small_run(&run);
    // A checkpoint that does not exist.
    let missing = run.checkpoint(99);
    let e = export(Some(&missing), out.path());
    assert!(
        e.contains("checkpoint-099.bpk") && e.contains("no such"),
        "{e}"
    );
    // A checkpoint of another shape than the config says.
    let mut other = run.read_config().unwrap();
    other.model.width = 8;
    run.write_config(&other).unwrap();
    let e = export(None, out.path());
    assert!(e.contains("does not match"), "{e}");
    other.model.width = 4;
    run.write_config(&other).unwrap();
    // An output folder that cannot be created (its parent is a file).
    let file = out.path().join("a-file");
    std::fs::write(&file, b"x").unwrap();
    let e = export(None, &file.join("model"));
    assert!(e.contains("a-file"), "{e}");
}
