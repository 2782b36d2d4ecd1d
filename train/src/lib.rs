//! Training for edge-fer's expression models (LA-Net, Wu & Cui, ICCV 2023).
//!
//! This first part holds the data side: one canonical label order ([`data::Expression`]), readers
//! for the datasets people use (RAF-DB, FERPlus, AffectNet, a folder per label), seeded label-noise
//! injection that remembers what it flipped, and the progressively balanced sampler. The burn
//! model, the training loop, evaluation and ONNX export build on it.
#![warn(missing_docs)]

pub mod augment;
pub mod data;
pub mod eval;
pub mod fit;
pub mod landmarks;
pub mod loss;
pub mod model;
pub mod plot;
pub mod prepare;
pub mod rng;
pub mod state;
pub mod training;
