//! Training for edge-fer's expression models: LA-Net (Wu & Cui, ICCV 2023) and the parts of the
//! second method (Yang et al. 2023): supervised contrastive learning, uncertainty-guided
//! relabelling ([`relabel`]) and the amend-representation module ([`model::arm`]), each a switch
//! that composes with LA-Net.
//!
//! Data: one canonical label order ([`data::Expression`]), readers for the datasets people use
//! (RAF-DB, FERPlus, AffectNet, a folder per label), seeded label noise that remembers what it
//! flipped, the progressively balanced sampler, synthetic faces, and [`prepare`]'s crop cache made
//! with the runtime's own detection and alignment; [`faces`] turns either into batches. Model:
//! [`model`] (ResNet, LA-Net, LDE, MoCo, ARM), [`loss`], one step in [`training`]. A run: its
//! [`config`] (one `TrainingConfig`, saved with the run), its folder ([`run_dir`]), the loop in
//! [`fit`] with [`state`] for exact resumption and [`metrics`] per epoch, [`eval`], and [`export`]
//! of the inference path to ONNX with its model card.
#![warn(missing_docs)]

pub mod augment;
pub mod config;
pub mod data;
pub mod durable;
pub mod eval;
pub mod export;
pub mod faces;
pub mod fit;
pub mod init;
pub mod landmarks;
pub mod loss;
pub mod metrics;
pub mod model;
pub mod plot;
pub mod prepare;
pub mod relabel;
pub mod rng;
pub mod run_dir;
pub mod state;
pub mod training;
