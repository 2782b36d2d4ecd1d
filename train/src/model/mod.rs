//! LA-Net's modules (no loss code here: see [`crate::loss`]).

pub mod lde;
