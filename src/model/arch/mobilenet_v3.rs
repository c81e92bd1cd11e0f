//! torchvision's MobileNetV3 small and large: `features.0` (conv 3x3/2, bn, hardswish), inverted
//! residual blocks `features.N.block.J` (a 1x1 expansion where the width grows, a depthwise
//! conv, squeeze-and-excitation with a hardsigmoid gate where configured, a 1x1 projection with
//! bn and no activation; the input added back, `features.N.add`, where stride is 1 and the width
//! is kept), a last 1x1 conv block, `avgpool`, `flatten`, `classifier.0..3` (linear, hardswish,
//! dropout, linear). Batch norms use eps 0.001.
//!
//! Strides and activations come from torchvision's configuration (they are not in the weights);
//! kernels, widths and which blocks expand or have SE are read from the checkpoint.

use anyhow::{bail, Result};

use super::blocks::{conv_norm_act, make_divisible, squeeze_excitation, Act};
use super::builder::{Builder, ConvSpec};
use super::{classifier_or_none, conv_shape, has_classifier, rows, sized, Arch, Family, Layout};
use crate::model::graph::NodeId;
use crate::model::load::StateDict;
use crate::model::ops::{Add, Dropout, Flatten, Function, Op};

const EPS: f64 = 1e-3;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Variant {
    Small,
    Large,
}

/// One inverted residual block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bneck {
    pub kernel: usize,
    /// Width after the expansion; no expansion conv when it equals the input's.
    pub expanded: usize,
    pub out: usize,
    /// Squeeze width of the SE block, if there is one.
    pub squeeze: Option<usize>,
    /// Hardswish, else ReLU.
    pub hardswish: bool,
    pub stride: usize,
}

#[derive(Debug, Clone)]
pub struct MobileNetV3Config {
    pub variant: Variant,
    pub stem: usize,
    pub blocks: Vec<Bneck>,
    /// Width of the last conv block (6x the last block's output in torchvision).
    pub last_conv: usize,
    /// Width of the hidden classifier layer (1280 large, 1024 small).
    pub hidden: usize,
    pub classes: usize,
    /// Whether the checkpoint has the classifier (false: a backbone saved without it).
    pub classifier: bool,
}

/// torchvision's (kernel, expanded, out, SE, hardswish, stride) at width 1.0.
type Setting = (usize, usize, usize, bool, bool, usize);

const LARGE: [Setting; 15] = [
    (3, 16, 16, false, false, 1),
    (3, 64, 24, false, false, 2),
    (3, 72, 24, false, false, 1),
    (5, 72, 40, true, false, 2),
    (5, 120, 40, true, false, 1),
    (5, 120, 40, true, false, 1),
    (3, 240, 80, false, true, 2),
    (3, 200, 80, false, true, 1),
    (3, 184, 80, false, true, 1),
    (3, 184, 80, false, true, 1),
    (3, 480, 112, true, true, 1),
    (3, 672, 112, true, true, 1),
    (5, 672, 160, true, true, 2),
    (5, 960, 160, true, true, 1),
    (5, 960, 160, true, true, 1),
];

const SMALL: [Setting; 11] = [
    (3, 16, 16, true, false, 2),
    (3, 72, 24, false, false, 2),
    (3, 88, 24, false, false, 1),
    (5, 96, 40, true, true, 2),
    (5, 240, 40, true, true, 1),
    (5, 240, 40, true, true, 1),
    (5, 120, 48, true, true, 1),
    (5, 144, 48, true, true, 1),
    (5, 288, 96, true, true, 2),
    (5, 576, 96, true, true, 1),
    (5, 576, 96, true, true, 1),
];

pub const FAMILY: Family = Family {
    title: "torchvision MobileNetV3",
    names: &["mobilenet_v3_small", "mobilenet_v3_large"],
    detect: |dict| {
        (dict.contains("features.0.0.weight")
            && dict.contains("features.1.block.0.0.weight")
            && classifier_or_none(dict, "classifier.3"))
        .then(|| detect(dict).map(Arch::new))
    },
    standard: |name, classes, dict| {
        let variant = match name {
            "mobilenet_v3_small" => Variant::Small,
            "mobilenet_v3_large" => Variant::Large,
            _ => return None,
        };
        let cfg = MobileNetV3Config::standard(variant, classes);
        Some(sized(cfg, dict, MobileNetV3Config::with_widths_of))
    },
};

impl MobileNetV3Config {
    pub fn standard(variant: Variant, classes: usize) -> MobileNetV3Config {
        let (settings, hidden): (&[Setting], usize) = match variant {
            Variant::Small => (&SMALL, 1024),
            Variant::Large => (&LARGE, 1280),
        };
        let blocks: Vec<Bneck> = settings
            .iter()
            .map(|&(kernel, expanded, out, se, hardswish, stride)| Bneck {
                kernel,
                expanded,
                out,
                squeeze: se.then(|| make_divisible((expanded / 4) as f64)),
                hardswish,
                stride,
            })
            .collect();
        let last_conv = 6 * blocks.last().map_or(0, |b| b.out);
        MobileNetV3Config {
            variant,
            stem: 16,
            blocks,
            last_conv,
            hidden,
            classes,
            classifier: true,
        }
    }

    /// The same layout with the kernels, widths, expansions, SE blocks and class count found in
    /// `dict`.
    pub fn with_widths_of(mut self, dict: &StateDict) -> MobileNetV3Config {
        let rows = |name: &str| rows(dict, name);
        if let Some(n) = rows("features.0.0.weight") {
            self.stem = n;
        }
        for (i, block) in self.blocks.iter_mut().enumerate() {
            let p = format!("features.{}.block", i + 1);
            let first = conv_shape(dict, &format!("{p}.0.0.weight"));
            let expands = matches!(first, Some([_, _, 1, 1]));
            let dw = usize::from(expands);
            if let Some([out, _, kernel, _]) = conv_shape(dict, &format!("{p}.{dw}.0.weight")) {
                (block.expanded, block.kernel) = (out, kernel);
            }
            block.squeeze = rows(&format!("{p}.{}.fc1.weight", dw + 1));
            let project = dw + 1 + usize::from(block.squeeze.is_some());
            if let Some(n) = rows(&format!("{p}.{project}.0.weight")) {
                block.out = n;
            }
        }
        let last = format!("features.{}.0.weight", self.blocks.len() + 1);
        if let Some(n) = rows(&last) {
            self.last_conv = n;
        }
        if let Some(n) = rows("classifier.0.weight") {
            self.hidden = n;
        }
        if let Some(n) = rows("classifier.3.weight") {
            self.classes = n;
        }
        self.classifier = has_classifier(dict, "classifier.3");
        self
    }
}

/// Small or large from the number of blocks, then widths from the weights.
fn detect(dict: &StateDict) -> Result<MobileNetV3Config> {
    let blocks = (1..)
        .take_while(|i| dict.contains(&format!("features.{i}.block.0.0.weight")))
        .count();
    let variant = match blocks {
        11 => Variant::Small,
        15 => Variant::Large,
        n => bail!("unrecognised MobileNetV3 layout: {n} inverted residual blocks (small has 11, large 15)"),
    };
    Ok(MobileNetV3Config::standard(variant, 1000).with_widths_of(dict))
}

fn inverted_residual(b: &mut Builder, name: &str, x: NodeId, block: &Bneck) -> Result<NodeId> {
    let act = if block.hardswish {
        Act::Func(Function::Hardswish)
    } else {
        Act::Relu
    };
    let p = |j: usize| format!("{name}.block.{j}");
    let mut j = 0;
    let mut y = x;
    if block.expanded != b.shape(x)[1] {
        let expand = ConvSpec::new(block.expanded, 1, 0, false);
        y = conv_norm_act(b, &p(j), y, expand, EPS, Some(act))?;
        j += 1;
    }
    let depthwise = ConvSpec::new(
        block.expanded,
        block.kernel,
        block.kernel.saturating_sub(1) / 2,
        false,
    )
    .stride(block.stride)
    .groups(block.expanded);
    y = conv_norm_act(b, &p(j), y, depthwise, EPS, Some(act))?;
    j += 1;
    if let Some(squeeze) = block.squeeze {
        y = squeeze_excitation(b, &p(j), y, squeeze, Act::Relu, Function::Hardsigmoid)?;
        j += 1;
    }
    let project = ConvSpec::new(block.out, 1, 0, false);
    y = conv_norm_act(b, &p(j), y, project, EPS, None)?;
    if block.stride == 1 && b.shape(x)[1] == block.out {
        y = b.op(&format!("{name}.add"), Op::Add(Add), &[y, x])?;
    }
    Ok(y)
}

impl Layout for MobileNetV3Config {
    fn name(&self) -> String {
        match self.variant {
            Variant::Small => "mobilenet_v3_small".into(),
            Variant::Large => "mobilenet_v3_large".into(),
        }
    }

    fn build(&self, b: &mut Builder) -> Result<()> {
        let hardswish = Some(Act::Func(Function::Hardswish));
        let mut x = b.last();
        let stem = ConvSpec::new(self.stem, 3, 1, false).stride(2);
        x = conv_norm_act(b, "features.0", x, stem, EPS, hardswish)?;
        for (i, block) in self.blocks.iter().enumerate() {
            x = inverted_residual(b, &format!("features.{}", i + 1), x, block)?;
        }
        let last = format!("features.{}", self.blocks.len() + 1);
        let spec = ConvSpec::new(self.last_conv, 1, 0, false);
        x = conv_norm_act(b, &last, x, spec, EPS, hardswish)?;
        x = b.global_avg_pool("avgpool", x)?;
        x = b.op("flatten", Op::Flatten(Flatten), &[x])?;
        if self.classifier {
            x = b.linear("classifier.0", x, self.hidden, true)?;
            x = b.activation("classifier.1", x, Function::Hardswish)?;
            x = b.op("classifier.2", Op::Dropout(Dropout), &[x])?;
            b.classifier("classifier.3", x, self.classes)?;
        }
        Ok(())
    }

    /// `features[-1]`, the last conv block.
    fn cam_layer(&self) -> Option<String> {
        Some(format!("features.{}", self.blocks.len() + 1))
    }

    fn input_size(&self) -> Option<[usize; 2]> {
        None
    }
}
