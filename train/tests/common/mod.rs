//! Helpers shared by the train crate's integration tests.

use std::path::Path;

use burn::module::{Module, ModuleVisitor, Param};
use burn::prelude::{Device, Tensor};

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

/// Every weight of the backbone in `dir/checkpoint` (7 classes), in module order.
pub fn checkpoint_values(dir: &Path, checkpoint: &str) -> Vec<f32> {
    let (_, net) = train::eval::load_model(dir, &dir.join(checkpoint), 7, &Device::flex()).unwrap();
    let mut all = Vec::new();
    net.visit(&mut Values(&mut all));
    all
}
