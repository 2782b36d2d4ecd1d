//! Integration tests on real photographs, the real dlib models and the shipped ONNX model.
//!
//! - `faces`: detection and landmarks through the library.
//! - `model`: the shipped model under tract against its onnxruntime reference, and card checks.
//! - `pipeline`: the threaded pipeline with a stand-in live camera and with files.
//! - `camera_loss`: a stand-in camera that disappears and returns, through the real pipeline.
//! - `cli`: the built `edge-fer` binary end to end: output schema, formats, bad input.

mod camera_loss;
mod cli;
mod faces;
mod model;
mod pipeline;
mod util;
