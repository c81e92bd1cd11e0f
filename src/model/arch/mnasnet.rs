//! torchvision's MNASNet 0.5/0.75/1.0/1.3: `layers.0..7` (conv 3x3/2, bn, relu, depthwise 3x3,
//! bn, relu, 1x1 conv, bn), six stacks `layers.8..13` of inverted residual blocks
//! (`layers.S.I.layers.0..7`: 1x1 expansion, bn, relu, depthwise conv, bn, relu, 1x1
//! projection, bn; the input added back, `layers.S.I.add`, where stride is 1 and the width
//! kept), `layers.14..16` (1x1 conv, bn, relu), then the functional `mean` over H and W (here
//! global average pooling, `mean`, and `flatten`) and `classifier.0..1` (dropout, linear).

use anyhow::{bail, Result};

use super::blocks::conv_bn_at;
use super::builder::{Builder, ConvSpec};
use super::{classifier_or_none, conv_shape, has_classifier, rows, sized, Arch, Family, Layout};
use crate::model::graph::NodeId;
use crate::model::load::StateDict;
use crate::model::ops::{Add, Dropout, Flatten, Op};

/// One inverted residual block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Block {
    pub kernel: usize,
    pub expanded: usize,
    pub out: usize,
    pub stride: usize,
}

#[derive(Debug, Clone)]
pub struct MnasNetConfig {
    pub variant: Option<&'static str>,
    /// Widths of the stem conv and of the separable conv's output.
    pub stem: (usize, usize),
    pub stacks: Vec<Vec<Block>>,
    pub last: usize,
    pub classes: usize,
    /// Whether the checkpoint has the classifier (false: a backbone saved without it).
    pub classifier: bool,
}

/// torchvision's stacks: kernel, stride, expansion, repeats (widths from `DEPTHS`).
const STACKS: [(usize, usize, usize, usize); 6] = [
    (3, 2, 3, 3),
    (5, 2, 3, 3),
    (5, 2, 6, 3),
    (3, 1, 6, 2),
    (5, 2, 6, 4),
    (3, 1, 6, 1),
];
const DEPTHS: [usize; 8] = [32, 16, 24, 40, 80, 96, 192, 320];
const VARIANTS: [(&str, f64); 4] = [
    ("mnasnet0_5", 0.5),
    ("mnasnet0_75", 0.75),
    ("mnasnet1_0", 1.0),
    ("mnasnet1_3", 1.3),
];

pub const FAMILY: Family = Family {
    title: "torchvision MNASNet",
    names: &["mnasnet0_5", "mnasnet0_75", "mnasnet1_0", "mnasnet1_3"],
    detect: |dict| {
        (dict.contains("layers.0.weight")
            && dict.contains("layers.8.0.layers.0.weight")
            && classifier_or_none(dict, "classifier.1"))
        .then(|| detect(dict).map(Arch::new))
    },
    standard: |name, classes, dict| {
        let cfg = MnasNetConfig::standard(name, classes)?;
        Some(sized(cfg, dict, MnasNetConfig::with_widths_of))
    },
};

/// torchvision's `_round_to_multiple_of(val, 8)`: round to a multiple of 8, up unless that is
/// more than 10% above.
fn round8(val: f64) -> usize {
    let rounded = ((val + 4.0) as usize / 8 * 8).max(8);
    if rounded as f64 >= 0.9 * val {
        rounded
    } else {
        rounded + 8
    }
}

impl MnasNetConfig {
    pub fn standard(name: &str, classes: usize) -> Option<MnasNetConfig> {
        let &(variant, alpha) = VARIANTS.iter().find(|v| v.0 == name)?;
        let d = DEPTHS.map(|c| round8(c as f64 * alpha));
        let stacks = STACKS
            .iter()
            .enumerate()
            .map(|(s, &(kernel, stride, expansion, repeats))| {
                (0..repeats)
                    .map(|i| {
                        let input = if i == 0 { d[s + 1] } else { d[s + 2] };
                        Block {
                            kernel,
                            expanded: input * expansion,
                            out: d[s + 2],
                            stride: if i == 0 { stride } else { 1 },
                        }
                    })
                    .collect()
            })
            .collect();
        Some(MnasNetConfig {
            variant: Some(variant),
            stem: (d[0], d[1]),
            stacks,
            last: 1280,
            classes,
            classifier: true,
        })
    }

    /// The same layout with the kernels, widths and class count of `dict`.
    pub fn with_widths_of(mut self, dict: &StateDict) -> MnasNetConfig {
        let rows = |name: &str| rows(dict, name);
        if let (Some(a), Some(b)) = (rows("layers.0.weight"), rows("layers.6.weight")) {
            self.stem = (a, b);
        }
        for (s, stack) in self.stacks.iter_mut().enumerate() {
            for (i, block) in stack.iter_mut().enumerate() {
                let p = format!("layers.{}.{i}.layers", s + 8);
                if let Some([out, _, k, _]) = conv_shape(dict, &format!("{p}.3.weight")) {
                    (block.expanded, block.kernel) = (out, k);
                }
                if let Some(n) = rows(&format!("{p}.6.weight")) {
                    block.out = n;
                }
            }
        }
        if let Some(n) = rows("layers.14.weight") {
            self.last = n;
        }
        if let Some(n) = rows("classifier.1.weight") {
            self.classes = n;
        }
        self.classifier = has_classifier(dict, "classifier.1");
        let stem = self.stem.0;
        self.variant = VARIANTS
            .iter()
            .find(|v| round8(DEPTHS[0] as f64 * v.1) == stem)
            .map(|v| v.0);
        self
    }
}

fn detect(dict: &StateDict) -> Result<MnasNetConfig> {
    let cfg = MnasNetConfig::standard("mnasnet1_0", 1000).expect("a known variant");
    for (s, stack) in cfg.stacks.iter().enumerate() {
        let name = format!("layers.{}.{}.layers.0.weight", s + 8, stack.len() - 1);
        if !dict.contains(&name) {
            bail!("unrecognised MNASNet layout: no {name}");
        }
    }
    Ok(cfg.with_widths_of(dict))
}

fn inverted_residual(b: &mut Builder, name: &str, x: NodeId, block: &Block) -> Result<NodeId> {
    let p = format!("{name}.layers");
    let expand = ConvSpec::new(block.expanded, 1, 0, false);
    let mut y = conv_bn_at(b, &p, 0, x, expand, true)?;
    let depthwise = ConvSpec::new(block.expanded, block.kernel, block.kernel / 2, false)
        .stride(block.stride)
        .groups(block.expanded);
    y = conv_bn_at(b, &p, 3, y, depthwise, true)?;
    y = conv_bn_at(b, &p, 6, y, ConvSpec::new(block.out, 1, 0, false), false)?;
    if block.stride == 1 && b.shape(x)[1] == block.out {
        y = b.op(&format!("{name}.add"), Op::Add(Add), &[y, x])?;
    }
    Ok(y)
}

impl Layout for MnasNetConfig {
    fn name(&self) -> String {
        self.variant.unwrap_or("mnasnet-like").into()
    }

    fn build(&self, b: &mut Builder) -> Result<()> {
        let mut x = b.last();
        x = conv_bn_at(
            b,
            "layers",
            0,
            x,
            ConvSpec::new(self.stem.0, 3, 1, false).stride(2),
            true,
        )?;
        let separable = ConvSpec::new(self.stem.0, 3, 1, false).groups(self.stem.0);
        x = conv_bn_at(b, "layers", 3, x, separable, true)?;
        x = conv_bn_at(
            b,
            "layers",
            6,
            x,
            ConvSpec::new(self.stem.1, 1, 0, false),
            false,
        )?;
        for (s, stack) in self.stacks.iter().enumerate() {
            for (i, block) in stack.iter().enumerate() {
                x = inverted_residual(b, &format!("layers.{}.{i}", s + 8), x, block)?;
            }
        }
        x = conv_bn_at(
            b,
            "layers",
            14,
            x,
            ConvSpec::new(self.last, 1, 0, false),
            true,
        )?;
        x = b.global_avg_pool("mean", x)?;
        x = b.op("flatten", Op::Flatten(Flatten), &[x])?;
        if self.classifier {
            x = b.op("classifier.0", Op::Dropout(Dropout), &[x])?;
            b.classifier("classifier.1", x, self.classes)?;
        }
        Ok(())
    }

    /// `layers[-1]`, the last ReLU.
    fn cam_layer(&self) -> Option<String> {
        Some("layers.16".into())
    }

    fn input_size(&self) -> Option<[usize; 2]> {
        None
    }
}
