//! The views: plain functions from tensors to RGB images.

pub mod activations;
pub mod colormap;
pub mod render;
