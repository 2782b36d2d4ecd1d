//! edge-fer: facial expression recognition for edge devices.
//!
//! Frames from a camera, image files or a folder ([`capture`]) go through dlib face detection and
//! 68-point landmarks ([`detect`]), a similarity alignment to the model's template ([`align`]) and
//! an ONNX expression model run by tract ([`classify`], described by a [`ModelCard`]); results are
//! written as JSON lines or text ([`output`]). [`pipeline`] joins the stages with threads and
//! bounded channels. The binary `edge-fer` is a thin layer of flags over this library, and the
//! `train` crate calls the same [`align`] and [`classify::normalise_into`] so that training and
//! inference preprocess faces identically.
#![warn(missing_docs)]

pub mod align;
pub mod blazeface;
pub mod capture;
pub mod checksum;
pub mod classify;
pub mod config_file;
pub mod detect;
pub mod error;
pub mod hog;
pub mod metrics;
pub mod model_card;
pub mod mqtt;
pub mod output;
pub mod pipeline;
pub mod pose;
pub mod serve;
pub mod shape_predictor;
pub mod stats;
pub mod track;
pub mod visits;

pub use crate::capture::{Frame, FrameSource};
pub use crate::classify::{AlignedFace, Classifier, Probs};
pub use crate::detect::{Face, FaceFinder, FaceFinderConfig, Landmarks};
pub use crate::error::{Error, Result};
pub use crate::model_card::ModelCard;
