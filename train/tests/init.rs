//! `--init`: a torchvision-style ResNet checkpoint (written by fixtures/make_resnet_pth.py in
//! PyTorch's zip format) lands value by value in the backbone, and the landmark branch starts as
//! a copy of the expression branch.

use std::collections::HashMap;
use std::path::Path;

use burn::module::{Module, ModuleVisitor, Param};
use burn::prelude::*;
use train::model::lanet::LaNetConfig;

fn fixture(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// Every float tensor of a module by its dotted path.
#[derive(Default)]
struct Paths {
    path: Vec<String>,
    values: HashMap<String, Vec<f32>>,
}

impl ModuleVisitor for Paths {
    fn enter_module(&mut self, name: &str, _container: &str) {
        self.path.push(name.to_string());
    }
    fn exit_module(&mut self, _name: &str, _container: &str) {
        self.path.pop();
    }
    fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<D>>) {
        let v = p
            .val()
            .into_data()
            .convert::<f32>()
            .try_to_vec::<f32>()
            .unwrap();
        self.values.insert(self.path.join("."), v);
    }
}

/// Our path for a torchvision name.
fn ours(name: &str) -> String {
    let mut s = name
        .replacen(
            "conv1.",
            "stem.conv.",
            usize::from(name.starts_with("conv1.")),
        )
        .replacen("bn1.", "stem.bn.", usize::from(name.starts_with("bn1.")));
    for (from, to) in [
        ("layer1.", "layer1.blocks."),
        ("layer2.", "expr.0.blocks."),
        ("layer3.", "expr.1.blocks."),
        ("layer4.", "expr.2.blocks."),
    ] {
        if let Some(rest) = s.strip_prefix(from) {
            s = format!("{to}{rest}");
        }
    }
    format!("expression.{s}")
        .replace(".downsample.0.", ".downsample.conv.")
        .replace(".downsample.1.", ".downsample.bn.")
        .replace("bn1.weight", "bn1.gamma")
        .replace("bn1.bias", "bn1.beta")
        .replace("bn2.weight", "bn2.gamma")
        .replace("bn2.bias", "bn2.beta")
        .replace("bn.weight", "bn.gamma")
        .replace("bn.bias", "bn.beta")
}

#[test]
fn torchvision_names_land_in_the_backbone_and_both_branches() {
    let device = Device::flex();
    let config = LaNetConfig::new().with_width(4).with_blocks(1);
    let net = config.init(&device);
    let (net, report) = train::init::from_pytorch(net, &fixture("resnet-w4.pth"), false).unwrap();
    let expected: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(fixture("resnet-w4.json")).unwrap()).unwrap();
    let backbone: Vec<&String> = expected.keys().filter(|k| !k.starts_with("fc.")).collect();
    assert_eq!(report.applied, backbone.len(), "{report:?}");
    assert!(report.unused.iter().any(|u| u.contains("fc")), "{report:?}");

    let mut paths = Paths::default();
    net.visit(&mut paths);
    for name in backbone {
        let path = ours(name);
        let got = paths
            .values
            .get(&path)
            .unwrap_or_else(|| panic!("{name} -> {path} not in the model"));
        let want = &expected[name.as_str()];
        let sum: f64 = got.iter().map(|&v| f64::from(v)).sum();
        assert!(
            (got[0] as f64 - want["first"].as_f64().unwrap()).abs() < 1e-6,
            "{name}"
        );
        assert!((sum - want["sum"].as_f64().unwrap()).abs() < 1e-3, "{name}");
        // The landmark branch holds the same values as the expression branch.
        if let Some(rest) = path.strip_prefix("expression.expr.") {
            assert_eq!(
                paths.values.get(&format!("landmark.{rest}")),
                Some(got),
                "{path}"
            );
        }
    }
}

#[test]
fn a_checkpoint_of_another_shape_or_no_file_is_refused_by_name() {
    let device = Device::flex();
    let wide = LaNetConfig::new()
        .with_width(8)
        .with_blocks(1)
        .init(&device);
    let e = train::init::from_pytorch(wide, &fixture("resnet-w4.pth"), false).unwrap_err();
    let e = format!("{e:#}");
    assert!(e.contains("resnet-w4.pth"), "{e}");
    let net = LaNetConfig::new()
        .with_width(4)
        .with_blocks(1)
        .init(&device);
    let e = train::init::from_pytorch(net, Path::new("/nonexistent/r18.pth"), false).unwrap_err();
    let e = format!("{e:#}");
    assert!(
        e.contains("/nonexistent/r18.pth") && e.contains("no such file"),
        "{e}"
    );
}
