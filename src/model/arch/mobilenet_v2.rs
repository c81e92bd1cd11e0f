//! torchvision's MobileNetV2: `features.0` (conv 3x3/2, bn, relu6), seventeen inverted residual
//! blocks `features.1..17` (`conv.0` a 1x1 expansion with bn and relu6 where the expansion ratio
//! is not 1, then a 3x3 depthwise conv with bn and relu6, a 1x1 projection conv and its bn; the
//! input added back where stride is 1 and the width is kept), `features.18` (1x1 conv, bn,
//! relu6), global average pooling, `classifier.0..1` (dropout, linear).
//!
//! Functional steps in PyTorch's `forward`: the residual sum is `features.N.add`, the pooling
//! `adaptive_avg_pool2d` and the flattening `flatten`.

use anyhow::{bail, Result};

use super::blocks::{conv_norm_act, Act};
use super::builder::{Builder, ConvSpec};
use super::{classifier_or_none, has_classifier, rows, sized, Arch, Family, Layout};
use crate::model::graph::NodeId;
use crate::model::load::StateDict;
use crate::model::ops::{Add, Dropout, Flatten, Function, Op};

/// One inverted residual block: its expanded width (equal to the input's when there is no
/// expansion), output width and stride.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Block {
    pub expand: bool,
    pub hidden: usize,
    pub out: usize,
    pub stride: usize,
}

#[derive(Debug, Clone)]
pub struct MobileNetV2Config {
    pub stem: usize,
    pub blocks: Vec<Block>,
    pub last: usize,
    pub classes: usize,
    /// Whether the checkpoint has the classifier (false: a backbone saved without it).
    pub classifier: bool,
}

/// torchvision's (expansion t, width c, repeats n, first stride s).
const SETTING: [(usize, usize, usize, usize); 7] = [
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
];

pub const FAMILY: Family = Family {
    title: "torchvision MobileNetV2",
    names: &["mobilenet_v2"],
    detect: |dict| {
        (dict.contains("features.0.0.weight")
            && dict.contains("features.1.conv.0.0.weight")
            && classifier_or_none(dict, "classifier.1"))
        .then(|| detect(dict).map(Arch::new))
    },
    standard: |name, classes, dict| {
        (name == "mobilenet_v2").then(|| {
            sized(
                MobileNetV2Config::standard(classes),
                dict,
                MobileNetV2Config::with_widths_of,
            )
        })
    },
};

impl MobileNetV2Config {
    /// Width multiplier 1.0.
    pub fn standard(classes: usize) -> MobileNetV2Config {
        let mut blocks = Vec::new();
        let mut input = 32;
        for (t, c, n, s) in SETTING {
            for i in 0..n {
                blocks.push(Block {
                    expand: t != 1,
                    hidden: input * t,
                    out: c,
                    stride: if i == 0 { s } else { 1 },
                });
                input = c;
            }
        }
        MobileNetV2Config {
            stem: 32,
            blocks,
            last: 1280,
            classes,
            classifier: true,
        }
    }

    /// The same layout with the widths and class count found in `dict` (a width multiplier
    /// changes every width, never the strides).
    pub fn with_widths_of(mut self, dict: &StateDict) -> MobileNetV2Config {
        let rows = |name: &str| rows(dict, name);
        if let Some(n) = rows("features.0.0.weight") {
            self.stem = n;
        }
        for (i, block) in self.blocks.iter_mut().enumerate() {
            let p = format!("features.{}.conv", i + 1);
            let projection = if block.expand { "2" } else { "1" };
            if let Some(n) = rows(&format!("{p}.0.0.weight")) {
                block.hidden = n;
            }
            if let Some(n) = rows(&format!("{p}.{projection}.weight")) {
                block.out = n;
            }
        }
        let last = format!("features.{}.0.weight", self.blocks.len() + 1);
        if let Some(n) = rows(&last) {
            self.last = n;
        }
        if let Some(n) = rows("classifier.1.weight") {
            self.classes = n;
        }
        self.classifier = has_classifier(dict, "classifier.1");
        self
    }
}

fn detect(dict: &StateDict) -> Result<MobileNetV2Config> {
    let cfg = MobileNetV2Config::standard(1000);
    for i in 1..=cfg.blocks.len() + 1 {
        let name = if i <= cfg.blocks.len() {
            format!("features.{i}.conv.0.0.weight")
        } else {
            format!("features.{i}.0.weight")
        };
        if !dict.contains(&name) {
            bail!("unrecognised MobileNetV2 layout: no {name}");
        }
    }
    Ok(cfg.with_widths_of(dict))
}

/// Conv (no bias), batch norm and ReLU6 as `{name}.0`, `.1`, `.2`.
fn conv_bn_relu6(b: &mut Builder, name: &str, x: NodeId, spec: ConvSpec) -> Result<NodeId> {
    conv_norm_act(b, name, x, spec, 1e-5, Some(Act::Func(Function::Relu6)))
}

fn inverted_residual(b: &mut Builder, name: &str, x: NodeId, block: &Block) -> Result<NodeId> {
    let p = |s: &str| format!("{name}.conv.{s}");
    let mut y = x;
    let mut at = 0;
    if block.expand {
        y = conv_bn_relu6(b, &p("0"), y, ConvSpec::new(block.hidden, 1, 0, false))?;
        at = 1;
    }
    let depthwise = ConvSpec::new(block.hidden, 3, 1, false)
        .stride(block.stride)
        .groups(block.hidden);
    y = conv_bn_relu6(b, &p(&at.to_string()), y, depthwise)?;
    y = b.conv(
        &p(&(at + 1).to_string()),
        y,
        ConvSpec::new(block.out, 1, 0, false),
    )?;
    y = b.batch_norm(&p(&(at + 2).to_string()), y, 1e-5)?;
    if block.stride == 1 && b.shape(x)[1] == block.out {
        y = b.op(&format!("{name}.add"), Op::Add(Add), &[x, y])?;
    }
    Ok(y)
}

impl Layout for MobileNetV2Config {
    fn name(&self) -> String {
        "mobilenet_v2".into()
    }

    fn build(&self, b: &mut Builder) -> Result<()> {
        let mut x = b.last();
        let stem = ConvSpec::new(self.stem, 3, 1, false).stride(2);
        x = conv_bn_relu6(b, "features.0", x, stem)?;
        for (i, block) in self.blocks.iter().enumerate() {
            x = inverted_residual(b, &format!("features.{}", i + 1), x, block)?;
        }
        let last = format!("features.{}", self.blocks.len() + 1);
        x = conv_bn_relu6(b, &last, x, ConvSpec::new(self.last, 1, 0, false))?;
        x = b.global_avg_pool("adaptive_avg_pool2d", x)?;
        x = b.op("flatten", Op::Flatten(Flatten), &[x])?;
        if self.classifier {
            x = b.op("classifier.0", Op::Dropout(Dropout), &[x])?;
            b.classifier("classifier.1", x, self.classes)?;
        }
        Ok(())
    }

    /// `features[-1]`, the last 1x1 conv block.
    fn cam_layer(&self) -> Option<String> {
        Some(format!("features.{}", self.blocks.len() + 1))
    }

    fn input_size(&self) -> Option<[usize; 2]> {
        None
    }
}
