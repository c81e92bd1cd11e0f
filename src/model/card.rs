//! model.toml: how a model folder describes its network, weights, input and labels.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::Deserialize;

use super::arch::LayerSpec;
use super::head::Head;

/// ImageNet statistics, torchvision's defaults.
pub const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
pub const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];
/// ImageNet's mean in 0-255 pixels, blue first, as keras.applications' "caffe" mode takes it off.
const CAFFE_BGR_MEAN: [f32; 3] = [103.939, 116.779, 123.68];

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
    /// Per-channel mean and std of pixels in `0..=1`, in the model's channel order (ImageNet's
    /// by default).
    pub mean: Option<[f32; 3]>,
    pub std: Option<[f32; 3]>,
    /// The order of the model's input channels: "rgb" (default) or "bgr".
    pub channel_order: Option<ChannelOrder>,
    /// A preset in place of `mean`, `std` and `channel_order`: keras.applications'
    /// `preprocess_input` modes "torch" (ImageNet statistics), "tf" (-1..1) and "caffe" (BGR,
    /// 0-255 less ImageNet's BGR mean).
    pub preprocessing: Option<Preprocessing>,
    /// A text file with one class name per line, relative to the model.toml.
    pub labels: Option<PathBuf>,
    /// Class names given with the weights (a timm config.json's), not in a model.toml.
    #[serde(skip)]
    pub label_names: Option<Vec<String>>,
    /// How the outputs read: "softmax", "sigmoid" (one logit, two classes) or "multilabel"
    /// (a sigmoid per class); by default a sigmoid for one output, else a softmax.
    pub output: Option<Head>,
    #[serde(default)]
    pub layers: Vec<LayerSpec>,
}

/// The order of a model's three input channels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChannelOrder {
    #[default]
    Rgb,
    /// Caffe's and OpenCV's order (keras.applications' "caffe" mode).
    Bgr,
}

impl ChannelOrder {
    /// The image channel (R, G, B = 0, 1, 2) that feeds model channel `c`.
    pub fn source(self, c: usize) -> usize {
        match self {
            ChannelOrder::Rgb => c,
            ChannelOrder::Bgr => 2 - c,
        }
    }
}

/// keras.applications' `preprocess_input` modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Preprocessing {
    /// ImageNet's mean and std on 0-1 pixels, RGB (PyTorch's, and the default).
    Torch,
    /// Pixels scaled to -1..1 (`x / 127.5 - 1`), RGB.
    Tf,
    /// BGR, 0-255 pixels less ImageNet's mean (103.939, 116.779, 123.68), no scaling.
    Caffe,
}

/// Per-channel input normalisation, applied to pixel values in `0..=1`; `mean` and `std` are in
/// the model's channel order.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Normalisation {
    pub height: usize,
    pub width: usize,
    pub mean: [f32; 3],
    pub std: [f32; 3],
    pub order: ChannelOrder,
}

impl Normalisation {
    /// Mean and std per image channel (R, G, B), whatever the model's order.
    pub fn rgb_statistics(&self) -> ([f32; 3], [f32; 3]) {
        let pick = |v: [f32; 3]| std::array::from_fn(|i| v[self.order.source(i)]);
        (pick(self.mean), pick(self.std))
    }
}

fn auto() -> String {
    "auto".into()
}

fn default_size() -> [usize; 2] {
    [224, 224]
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
        if card
            .std
            .is_some_and(|std| std.iter().any(|&s| s <= 0.0 || !s.is_finite()))
        {
            anyhow::bail!("std values must be positive");
        }
        if card.preprocessing.is_some()
            && (card.mean.is_some() || card.std.is_some() || card.channel_order.is_some())
        {
            anyhow::bail!(
                "preprocessing is a preset of mean, std and channel_order: give one or the others"
            );
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
            mean: None,
            std: None,
            channel_order: None,
            preprocessing: None,
            labels: None,
            label_names: None,
            output: None,
            layers: Vec::new(),
        }
    }

    pub fn normalisation(&self) -> Normalisation {
        let (mean, std, order) = match self.preprocessing {
            None | Some(Preprocessing::Torch) => (
                self.mean.unwrap_or(IMAGENET_MEAN),
                self.std.unwrap_or(IMAGENET_STD),
                self.channel_order.unwrap_or_default(),
            ),
            Some(Preprocessing::Tf) => ([0.5; 3], [0.5; 3], ChannelOrder::Rgb),
            Some(Preprocessing::Caffe) => (
                CAFFE_BGR_MEAN.map(|m| m / 255.0),
                [1.0 / 255.0; 3],
                ChannelOrder::Bgr,
            ),
        };
        Normalisation {
            height: self.input_size[0],
            width: self.input_size[1],
            mean,
            std,
            order,
        }
    }
}
