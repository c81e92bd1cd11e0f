//! Architecture families. Each family is one file (its configuration, detection from a
//! checkpoint's keys and shapes, widths read from it, and the build that names nodes by the
//! PyTorch module paths of its state dicts) plus one line in [`FAMILIES`]; `--arch`, detection
//! errors and the README's list come from that table. A model.toml's plain chain of layers
//! ([`sequential`]) is built the same way but never detected.

pub mod alexnet;
mod blocks;
mod builder;
pub mod convnext;
pub mod densenet;
pub mod efficientnet;
pub mod googlenet;
pub mod inception;
pub mod mnasnet;
pub mod mobilenet_v2;
pub mod mobilenet_v3;
pub mod regnet;
pub mod resnet;
pub mod sequential;
pub mod shufflenet;
pub mod squeezenet;
pub mod timm_efficientnet;
pub mod vgg;

use anyhow::{bail, Result};

pub use builder::Builder;
pub use resnet::ResNetConfig;
pub use sequential::LayerSpec;
pub use vgg::VggConfig;

use super::graph::Graph;
use super::load::StateDict;
use super::weights::Weights;

/// A network layout with every width it needs: what a family's file builds.
pub trait Layout: std::fmt::Debug {
    /// A short name: `resnet50`, `vgg16_bn`, `sequential (9 layers)`.
    fn name(&self) -> String;
    /// Adds the layers to `b`.
    fn build(&self, b: &mut Builder) -> Result<()>;
    /// The layer class activation maps are best taken at, where the family has one (the module
    /// pytorch-grad-cam's README suggests: `features[-1]`, `layer4[-1]`, ...).
    fn cam_layer(&self) -> Option<String>;
    /// The input size `[height, width]` the family is made for, where it is not 224x224 (a
    /// bare checkpoint is run at it; a model.toml says its own).
    fn input_size(&self) -> Option<[usize; 2]>;
}

/// One architecture family, as its file provides it.
pub struct Family {
    /// In messages: "torchvision VGG".
    pub title: &'static str,
    /// The variants `--arch` and model.toml's `architecture` accept.
    pub names: &'static [&'static str],
    /// The family's layout for a checkpoint: `None` when its keys are not this family's, an
    /// error when they are but the layout cannot be read.
    pub detect: fn(&StateDict) -> Option<Result<Arch>>,
    /// A named variant with `classes` outputs, or with the widths and classes of a checkpoint
    /// (`None`: not one of `names`).
    pub standard: fn(&str, usize, Option<&StateDict>) -> Option<Arch>,
}

/// Every family convscope opens from a state dict, in the order detection tries them.
pub const FAMILIES: [Family; 15] = [
    alexnet::FAMILY,
    vgg::FAMILY,
    resnet::FAMILY,
    squeezenet::FAMILY,
    mobilenet_v2::FAMILY,
    mobilenet_v3::FAMILY,
    efficientnet::FAMILY,
    convnext::FAMILY,
    densenet::FAMILY,
    regnet::FAMILY,
    mnasnet::FAMILY,
    shufflenet::FAMILY,
    googlenet::FAMILY,
    inception::FAMILY,
    timm_efficientnet::FAMILY,
];

/// Whose module names a family's state dict uses, where torchvision and timm name the same
/// network differently (each family maps it to its module paths).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Naming {
    Torchvision,
    Timm,
}

impl Naming {
    /// timm's when `dict` has `timm_key`, else torchvision's.
    fn of(dict: &StateDict, timm_key: &str) -> Naming {
        match dict.contains(timm_key) {
            true => Naming::Timm,
            false => Naming::Torchvision,
        }
    }
}

/// The shape of a convolution's weight `(out, in / groups, kh, kw)` in `dict`, if it has a
/// 4-d tensor by that name (a damaged checkpoint's other ranks are ignored, never indexed).
fn conv_shape(dict: &StateDict, name: &str) -> Option<[usize; 4]> {
    match dict.shape(name)? {
        &[o, i, h, w] => Some([o, i, h, w]),
        _ => None,
    }
}

/// Reads a family's final linear layer `name` from a checkpoint into `head` and `classes`: the
/// Linear at `name` or the one inside a Sequential there (see [`linear_head`]), none for a
/// backbone with no tensors under `name`; otherwise both stay as they are (and the build says
/// what it misses).
fn read_head(dict: &StateDict, name: &str, head: &mut Option<String>, classes: &mut usize) {
    match linear_head(dict, name) {
        Some((path, n)) => (*head, *classes) = (Some(path), n),
        None if !dict.names().any(|k| k.starts_with(&format!("{name}."))) => *head = None,
        None => {}
    }
}

/// A final linear layer named `name` in a checkpoint, with its class count: `name` itself, the
/// one Linear of a Sequential there (`fc.1` after a Dropout, as fine-tuning scripts write it),
/// or, for a Sequential of several Linear layers and nothing else with tensors (`fc.0`, `fc.3`),
/// `name` with the last one's classes ([`Builder::head`] builds the chain). `None` when there
/// is none of these.
fn linear_head(dict: &StateDict, name: &str) -> Option<(String, usize)> {
    if let Some(n) = rows(dict, &format!("{name}.weight")) {
        return Some((name.to_string(), n));
    }
    let linears = head_linears(dict, name)?;
    match &linears[..] {
        [] => None,
        [(one, classes)] => Some((format!("{name}.{one}"), *classes)),
        [.., (_, classes)] => Some((name.to_string(), *classes)),
    }
}

/// The Linear layers of a Sequential `name` in a checkpoint, by index, with their output
/// widths; `None` when the Sequential holds tensors of anything else (a batch norm), whose
/// place between the Linear layers the checkpoint does not say.
fn head_linears(dict: &StateDict, name: &str) -> Option<Vec<(usize, usize)>> {
    let prefix = format!("{name}.");
    let mut linears = Vec::new();
    for key in dict.names().filter_map(|k| k.strip_prefix(&prefix)) {
        let (index, param) = key.split_once('.')?;
        let index: usize = index.parse().ok()?;
        match param {
            "weight" if dict.shape(&format!("{prefix}{key}"))?.len() == 2 => {
                linears.push((index, rows(dict, &format!("{prefix}{key}"))?));
            }
            "bias" => {}
            _ => return None,
        }
    }
    linears.sort_unstable();
    Some(linears)
}

/// Whether a checkpoint of a family whose classifier is the Sequential `classifier` has the
/// linear (or conv) layer `layer` there.
fn has_classifier(dict: &StateDict, layer: &str) -> bool {
    dict.contains(&format!("{layer}.weight"))
}

/// For detection: the classifier's `layer` is there, or no `classifier.` tensor at all (a
/// backbone saved without it).
fn classifier_or_none(dict: &StateDict, layer: &str) -> bool {
    has_classifier(dict, layer) || !dict.names().any(|k| k.starts_with("classifier."))
}

/// The first dimension (the output width) of a tensor in `dict`, if it has one by that name.
fn rows(dict: &StateDict, name: &str) -> Option<usize> {
    dict.shape(name)?.first().copied()
}

/// `layout` as an [`Arch`], with the widths of `dict` where one is given.
fn sized<L: Layout + 'static>(
    layout: L,
    dict: Option<&StateDict>,
    widths_of: fn(L, &StateDict) -> L,
) -> Arch {
    Arch::new(match dict {
        Some(d) => widths_of(layout, d),
        None => layout,
    })
}

/// Every name `--arch` accepts.
pub fn arch_names() -> Vec<&'static str> {
    FAMILIES
        .iter()
        .flat_map(|f| f.names.iter().copied())
        .collect()
}

/// The families' titles, for messages: "torchvision VGG, torchvision ResNet".
pub fn family_titles() -> String {
    FAMILIES
        .iter()
        .map(|f| f.title)
        .collect::<Vec<_>>()
        .join(", ")
}

/// A network layout, with every width it needs.
#[derive(Debug)]
pub struct Arch(Box<dyn Layout>);

impl Arch {
    pub fn new(layout: impl Layout + 'static) -> Arch {
        Arch(Box::new(layout))
    }

    /// A plain chain of layers from a model.toml.
    pub fn sequential(layers: Vec<LayerSpec>) -> Arch {
        Arch::new(sequential::Sequential(layers))
    }

    /// The standard layout of a named architecture with `classes` outputs.
    pub fn standard(name: &str, classes: usize) -> Result<Arch> {
        match FAMILIES
            .iter()
            .find_map(|f| (f.standard)(name, classes, None))
        {
            Some(arch) => Ok(arch),
            None => bail!(
                "unknown architecture '{name}'; known: {}",
                arch_names().join(", ")
            ),
        }
    }

    /// The layout of a checkpoint: detected from its keys and shapes, or the named one with the
    /// checkpoint's widths.
    pub fn for_checkpoint(name: Option<&str>, dict: &StateDict) -> Result<Arch> {
        match name {
            None | Some("auto") => detect(dict),
            Some(name) => {
                match FAMILIES
                    .iter()
                    .find_map(|f| (f.standard)(name, 1000, Some(dict)))
                {
                    Some(arch) => Ok(arch),
                    None => Arch::standard(name, 1000),
                }
            }
        }
    }

    pub fn name(&self) -> String {
        self.0.name()
    }

    pub fn cam_layer(&self) -> Option<String> {
        self.0.cam_layer()
    }

    pub fn input_size(&self) -> Option<[usize; 2]> {
        self.0.input_size()
    }

    /// Builds the graph for an input of `(channels, height, width)`.
    pub fn build(&self, input: (usize, usize, usize), weights: &mut dyn Weights) -> Result<Graph> {
        let mut b = Builder::new(input, weights);
        self.0.build(&mut b)?;
        Ok(b.finish())
    }
}

/// The first family that recognises the checkpoint.
/// The architecture a checkpoint's names and shapes describe.
pub fn detect(dict: &StateDict) -> Result<Arch> {
    if let Some(found) = FAMILIES.iter().find_map(|f| (f.detect)(dict)) {
        return found;
    }
    let mut names: Vec<&str> = dict.names().collect();
    names.sort_unstable();
    let sample: Vec<&str> = names.into_iter().take(4).collect();
    bail!(
        "the checkpoint matches no known architecture ({}); its keys start {}; pass --arch NAME or use a model folder with a model.toml",
        family_titles(),
        sample.join(", ")
    )
}
