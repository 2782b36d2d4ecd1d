//! Integration tests on real photographs, the real dlib models and the shipped ONNX model.
//!
//! - `fuzz_corpus`: the fuzzers' seeds, corpus and crash reproducers replayed.
//! - `kiosk`: the web view served by the binary, checked in headless Chromium.
//! - `blazeface`: the BlazeFace detector against onnxruntime and mediapipe, and with dlib's landmarks.
//! - `faces`: detection and landmarks through the library.
//! - `model`: the shipped model under tract against its onnxruntime reference, and card checks.
//! - `mqtt`: status, frames and visits through a real Mosquitto, restarted mid-run; errors.
//! - `pipeline`: the threaded pipeline with a stand-in live camera and with files.
//! - `camera_loss`: a stand-in camera that disappears and returns, through the real pipeline.
//! - `pose`: head pose from dlib's landmarks on the fixture portraits and their mirror images.
//! - `track`: following a moving face between detections; track ids and stats in the CLI.
//! - `visits`: a real face present, away and back in a frames folder, through the binary.
//! - `server`: the web servers' timeouts under slow and idle clients, and `/metrics`.
//! - `config`: `--config FILE` and the options' environment variables: precedence, refusals.
//! - `cli`: the built `edge-fer` binary end to end: output schema, formats, bad input.

mod blazeface;
mod camera_loss;
mod cli;
mod config;
mod faces;
mod fuzz_corpus;
mod kiosk;
mod model;
mod mqtt;
mod pipeline;
mod pose;
mod server;
mod track;
mod util;
mod visits;
