//! model.toml: how a model folder describes its network, weights, input and labels.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::Deserialize;

use super::arch::LayerSpec;
use super::head::Head;

/// ImageNet statistics, torchvision's defaults.
pub const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
pub const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];

/// Contents of a model.toml.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelCard {
    /// Display name; the folder name when absent.
    pub name: Option<String>,
    /// `auto` (detect from the checkpoint), `sequential` (the `layers` below), or an
    /// architecture name such as `resnet50` or `vgg16_bn`.
    #[serde(default = "auto")]
    pub architecture: String,
    /// Checkpoint file, relative to the model.toml.
    pub weights: PathBuf,
    /// Prefix of the model's own names in the checkpoint (`"net."`), taken off them; without
    /// it, the common wrappers' prefixes are found by themselves.
    pub prefix: Option<String>,
    /// `[height, width]` the network expects.
    #[serde(default = "default_size")]
    pub input_size: [usize; 2],
    #[serde(default = "imagenet_mean")]
    pub mean: [f32; 3],
    #[serde(default = "imagenet_std")]
    pub std: [f32; 3],
    /// A text file with one class name per line, relative to the model.toml.
    pub labels: Option<PathBuf>,
    /// How the outputs read: "softmax", "sigmoid" (one logit, two classes) or "multilabel"
    /// (a sigmoid per class); by default a sigmoid for one output, else a softmax.
    pub output: Option<Head>,
    #[serde(default)]
    pub layers: Vec<LayerSpec>,
}

/// Per-channel input normalisation, applied to pixel values in `0..=1`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Normalisation {
    pub height: usize,
    pub width: usize,
    pub mean: [f32; 3],
    pub std: [f32; 3],
}

fn auto() -> String {
    "auto".into()
}

fn default_size() -> [usize; 2] {
    [224, 224]
}

fn imagenet_mean() -> [f32; 3] {
    IMAGENET_MEAN
}

fn imagenet_std() -> [f32; 3] {
    IMAGENET_STD
}

impl ModelCard {
    pub fn read(path: &Path) -> Result<ModelCard> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        ModelCard::parse(&text).with_context(|| format!("{}", path.display()))
    }

    /// Parses and checks the text of a model.toml.
    pub fn parse(text: &str) -> Result<ModelCard> {
        let card: ModelCard = toml::from_str(text).map_err(|e| {
            anyhow::anyhow!(
                "not a valid model.toml: {}",
                super::load::first_line(e.message())
            )
        })?;
        if card.input_size.iter().any(|&s| s == 0 || s > 4096) {
            anyhow::bail!("input_size must be between 1 and 4096");
        }
        if card.std.iter().any(|&s| s <= 0.0 || !s.is_finite()) {
            anyhow::bail!("std values must be positive");
        }
        Ok(card)
    }

    /// The card of a bare checkpoint: detected architecture, 224x224, ImageNet statistics.
    pub fn for_checkpoint(path: &Path) -> ModelCard {
        ModelCard {
            name: None,
            architecture: auto(),
            weights: path.to_path_buf(),
            prefix: None,
            input_size: default_size(),
            mean: IMAGENET_MEAN,
            std: IMAGENET_STD,
            labels: None,
            output: None,
            layers: Vec::new(),
        }
    }

    pub fn normalisation(&self) -> Normalisation {
        Normalisation {
            height: self.input_size[0],
            width: self.input_size[1],
            mean: self.mean,
            std: self.std,
        }
    }
}
