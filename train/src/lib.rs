//! Training for edge-fer's expression models: LA-Net (Wu & Cui, ICCV 2023) and the parts of the
//! second method (Yang et al. 2023): supervised contrastive learning, uncertainty-guided
//! relabelling ([`relabel`]) and the amend-representation module ([`model::arm`]), each a switch
//! that composes with LA-Net.
//!
//! Data: one canonical label order ([`data::Expression`]), readers for the datasets people use
//! (RAF-DB, FERPlus, AffectNet, a folder per label), seeded label noise that remembers what it
//! flipped, the progressively balanced sampler, synthetic faces, and [`prepare`]'s crop cache made
//! with the runtime's own detection and alignment. Model: [`model`] (ResNet, LA-Net, LDE, MoCo, ARM),
//! [`loss`], one step in [`training`], the loop in [`fit`] with [`state`] for exact resumption,
//! [`eval`], and [`export`] of the inference path to ONNX with its model card.
#![warn(missing_docs)]

pub mod augment;
pub mod data;
pub mod eval;
pub mod export;
pub mod fit;
pub mod init;
pub mod landmarks;
pub mod loss;
pub mod model;
pub mod plot;
pub mod prepare;
pub mod relabel;
pub mod rng;
pub mod state;
pub mod training;
