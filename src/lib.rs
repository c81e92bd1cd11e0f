//! convscope: a terminal explorer for convolutional networks.
//!
//! The engine ([`model`]) loads a checkpoint into a graph of named nodes and runs it forward and
//! back; [`viz`] turns tensors into pictures; [`views`] makes the pictures of a layer that both
//! front ends show, the command line ([`cli`]) and the explorer ([`tui`]).

pub mod allocator;
pub mod cli;
pub mod config;
pub mod input;
pub mod metrics;
pub mod model;
pub mod shapes;
pub mod tui;
pub mod views;
pub mod viz;
