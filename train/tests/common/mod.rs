//! Helpers shared by the train crate's integration tests.

#![allow(dead_code)] // each test binary uses some of these

use std::path::Path;

use burn::module::{Module, ModuleVisitor, Param};
use burn::prelude::{Device, Tensor};
use train::config::{ContrastiveConfig, DataConfig, TrainingConfig};
use train::model::lanet::LaNetConfig;
use train::model::lde::LdeConfig;
use train::run_dir::RunDir;

/// The tests' own small run: a width-8 ResNet with one block per stage on 64x64 synthetic faces,
/// 210 for training and 70 for testing, 6 epochs of batch 35 at 3e-3, LDE with 4 neighbours and
/// contrastive queues of 140 (the defaults are the paper's full-size set-up).
pub fn small() -> TrainingConfig {
    TrainingConfig::new()
        .with_model(
            LaNetConfig::new()
                .with_input_size(64)
                .with_width(8)
                .with_blocks(1),
        )
        .with_data(DataConfig::new().with_train_faces(210).with_test_faces(70))
        .with_epochs(6)
        .with_batch(35)
        .with_lr(3e-3)
        .with_lde(LdeConfig::new().with_k(4))
        .with_contrastive(ContrastiveConfig::new().with_queue(140))
}

struct Values<'a>(&'a mut Vec<f32>);

impl ModuleVisitor for Values<'_> {
    fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<D>>) {
        self.0.extend(
            p.val()
                .into_data()
                .convert::<f32>()
                .try_to_vec::<f32>()
                .unwrap(),
        );
    }
}

/// Every weight of `m`, in module order.
pub fn values<M: Module>(m: &M) -> Vec<f32> {
    let mut all = Vec::new();
    m.visit(&mut Values(&mut all));
    all
}

/// Every weight of the backbone in `dir/checkpoint` (7 classes), in module order.
pub fn checkpoint_values(dir: &Path, checkpoint: &str) -> Vec<f32> {
    let run = RunDir::new(dir);
    let config = run.read_config().unwrap();
    let net =
        train::eval::load_model(&run, &config, &dir.join(checkpoint), 7, &Device::flex()).unwrap();
    values(&net)
}
