//! Architecture builders: each turns a configuration plus a [`Weights`] source into a [`Graph`]
//! whose node names are the PyTorch module paths of the matching state dict.

mod builder;
mod detect;
pub mod resnet;
pub mod sequential;
pub mod vgg;

use anyhow::{bail, Result};

pub use builder::Builder;
pub use resnet::ResNetConfig;
pub use sequential::LayerSpec;
pub use vgg::VggConfig;

use super::graph::Graph;
use super::load::StateDict;
use super::weights::Weights;

/// A network layout, with every width it needs.
#[derive(Debug, Clone)]
pub enum Arch {
    Vgg(VggConfig),
    ResNet(ResNetConfig),
    /// A plain chain of layers from a model.toml.
    Sequential(Vec<LayerSpec>),
}

/// Names accepted by `--arch` and model.toml's `architecture`.
pub const ARCH_NAMES: [&str; 13] = [
    "vgg11",
    "vgg11_bn",
    "vgg13",
    "vgg13_bn",
    "vgg16",
    "vgg16_bn",
    "vgg19",
    "vgg19_bn",
    "resnet18",
    "resnet34",
    "resnet50",
    "resnet101",
    "resnet152",
];

impl Arch {
    /// torchvision's layout for a named architecture with `classes` outputs.
    pub fn standard(name: &str, classes: usize) -> Result<Arch> {
        if let Some(cfg) = VggConfig::standard(name, classes) {
            return Ok(Arch::Vgg(cfg));
        }
        if let Some(cfg) = ResNetConfig::standard(name, classes) {
            return Ok(Arch::ResNet(cfg));
        }
        bail!(
            "unknown architecture '{name}'; known: {}",
            ARCH_NAMES.join(", ")
        )
    }

    /// The layout of a checkpoint: detected from its keys and shapes, or the named one with the
    /// checkpoint's widths.
    pub fn for_checkpoint(name: Option<&str>, dict: &StateDict) -> Result<Arch> {
        match name {
            None | Some("auto") => detect::detect(dict),
            Some(name) => {
                let arch = Arch::standard(name, 1000)?;
                Ok(match arch {
                    Arch::Vgg(cfg) => Arch::Vgg(cfg.with_widths_of(dict)),
                    Arch::ResNet(cfg) => Arch::ResNet(cfg.with_widths_of(dict)),
                    other => other,
                })
            }
        }
    }

    /// A short name: `resnet50`, `vgg16_bn`, `sequential (9 layers)`.
    pub fn name(&self) -> String {
        match self {
            Arch::Vgg(c) => c.name(),
            Arch::ResNet(c) => c.name(),
            Arch::Sequential(layers) => format!("sequential ({} layers)", layers.len()),
        }
    }

    /// Builds the graph for an input of `(channels, height, width)`.
    pub fn build(&self, input: (usize, usize, usize), weights: &mut dyn Weights) -> Result<Graph> {
        let mut b = Builder::new(input, weights);
        match self {
            Arch::Vgg(c) => vgg::build(c, &mut b)?,
            Arch::ResNet(c) => resnet::build(c, &mut b)?,
            Arch::Sequential(layers) => sequential::build(layers, &mut b)?,
        }
        Ok(b.finish())
    }
}
