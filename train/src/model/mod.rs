//! LA-Net's modules (no loss code here: see [`crate::loss`]).

pub mod arm;
pub mod lanet;
pub mod lde;
pub mod moco;
pub mod resnet;
