//! The views: plain functions from tensors to RGB images.

pub mod activations;
pub mod cam;
pub mod caption;
pub mod colormap;
pub mod filters;
pub mod overlay;
pub mod render;
pub mod resize;
pub mod temporary;
