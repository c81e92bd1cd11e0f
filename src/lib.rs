//! convscope: a terminal explorer for convolutional networks.
//!
//! The engine ([`model`]) loads a checkpoint into a graph of named nodes and runs it forward and
//! back; [`viz`] turns tensors into pictures; [`cli`] is the command line.

pub mod cli;
pub mod config;
pub mod input;
pub mod model;
pub mod shapes;
pub mod tui;
pub mod viz;
