//! torchvision's EfficientNet B0-B7 and V2 S/M/L: `features.0` (conv 3x3/2, bn, SiLU), stages
//! `features.S` of blocks `features.S.I`, a last 1x1 conv block, `avgpool`, `flatten`,
//! `classifier.0..1` (dropout, linear).
//!
//! An MBConv block (`features.S.I.block.J`): a 1x1 expansion where the width grows, a depthwise
//! conv, squeeze-and-excitation (SiLU, sigmoid gate), a 1x1 projection with bn. A fused MBConv
//! (V2's first stages): a full conv (with stride) then a 1x1 projection, or one conv where the
//! width is kept. Where stride is 1 and the width kept, `features.S.I.stochastic_depth` (the
//! identity at inference) and the residual `features.S.I.add` follow. Batch norms use eps 1e-5
//! (B0-B4) or 1e-3 (B5-B7, V2).
//!
//! Block counts, kernels and widths are read from the checkpoint; strides and block kinds come
//! from torchvision's configuration of the variant with those block counts.

use anyhow::{bail, Result};

use super::blocks::{conv_norm_act, make_divisible, squeeze_excitation, Act};
use super::builder::{Builder, ConvSpec};
use super::{classifier_or_none, conv_shape, has_classifier, rows, sized, Arch, Family, Layout};
use crate::model::graph::NodeId;
use crate::model::load::StateDict;
use crate::model::ops::{Add, Dropout, Flatten, Function, Op};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    MbConv,
    Fused,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Block {
    pub kind: Kind,
    /// Whether the block widens first (torchvision: the expanded width differs from the input's).
    pub expands: bool,
    pub kernel: usize,
    /// Width after the expansion (the input's where there is none).
    pub expanded: usize,
    pub out: usize,
    /// SE squeeze width (MBConv only).
    pub squeeze: Option<usize>,
    pub stride: usize,
}

#[derive(Debug, Clone)]
pub struct EfficientNetConfig {
    pub variant: &'static str,
    pub stem: usize,
    pub stages: Vec<Vec<Block>>,
    pub last_conv: usize,
    pub classes: usize,
    /// Whether the checkpoint has the classifier (false: a backbone saved without it).
    pub classifier: bool,
    pub eps: f64,
}

/// (kind, expand ratio, kernel, stride, input, output, layers), torchvision's tables.
type Stage = (Kind, usize, usize, usize, usize, usize, usize);

const B: [Stage; 7] = [
    (Kind::MbConv, 1, 3, 1, 32, 16, 1),
    (Kind::MbConv, 6, 3, 2, 16, 24, 2),
    (Kind::MbConv, 6, 5, 2, 24, 40, 2),
    (Kind::MbConv, 6, 3, 2, 40, 80, 3),
    (Kind::MbConv, 6, 5, 1, 80, 112, 3),
    (Kind::MbConv, 6, 5, 2, 112, 192, 4),
    (Kind::MbConv, 6, 3, 1, 192, 320, 1),
];

const V2_S: [Stage; 6] = [
    (Kind::Fused, 1, 3, 1, 24, 24, 2),
    (Kind::Fused, 4, 3, 2, 24, 48, 4),
    (Kind::Fused, 4, 3, 2, 48, 64, 4),
    (Kind::MbConv, 4, 3, 2, 64, 128, 6),
    (Kind::MbConv, 6, 3, 1, 128, 160, 9),
    (Kind::MbConv, 6, 3, 2, 160, 256, 15),
];

const V2_M: [Stage; 7] = [
    (Kind::Fused, 1, 3, 1, 24, 24, 3),
    (Kind::Fused, 4, 3, 2, 24, 48, 5),
    (Kind::Fused, 4, 3, 2, 48, 80, 5),
    (Kind::MbConv, 4, 3, 2, 80, 160, 7),
    (Kind::MbConv, 6, 3, 1, 160, 176, 14),
    (Kind::MbConv, 6, 3, 2, 176, 304, 18),
    (Kind::MbConv, 6, 3, 1, 304, 512, 5),
];

const V2_L: [Stage; 7] = [
    (Kind::Fused, 1, 3, 1, 32, 32, 4),
    (Kind::Fused, 4, 3, 2, 32, 64, 7),
    (Kind::Fused, 4, 3, 2, 64, 96, 7),
    (Kind::MbConv, 4, 3, 2, 96, 192, 10),
    (Kind::MbConv, 6, 3, 1, 192, 224, 19),
    (Kind::MbConv, 6, 3, 2, 224, 384, 25),
    (Kind::MbConv, 6, 3, 1, 384, 640, 7),
];

/// Every variant: name, stages, width and depth multipliers, batch-norm eps, last conv width
/// (`None`: four times the last stage's).
#[allow(clippy::type_complexity)]
const VARIANTS: [(&str, &[Stage], f64, f64, f64, Option<usize>); 11] = [
    ("efficientnet_b0", &B, 1.0, 1.0, 1e-5, None),
    ("efficientnet_b1", &B, 1.0, 1.1, 1e-5, None),
    ("efficientnet_b2", &B, 1.1, 1.2, 1e-5, None),
    ("efficientnet_b3", &B, 1.2, 1.4, 1e-5, None),
    ("efficientnet_b4", &B, 1.4, 1.8, 1e-5, None),
    ("efficientnet_b5", &B, 1.6, 2.2, 1e-3, None),
    ("efficientnet_b6", &B, 1.8, 2.6, 1e-3, None),
    ("efficientnet_b7", &B, 2.0, 3.1, 1e-3, None),
    ("efficientnet_v2_s", &V2_S, 1.0, 1.0, 1e-3, Some(1280)),
    ("efficientnet_v2_m", &V2_M, 1.0, 1.0, 1e-3, Some(1280)),
    ("efficientnet_v2_l", &V2_L, 1.0, 1.0, 1e-3, Some(1280)),
];

pub const FAMILY: Family = Family {
    title: "torchvision EfficientNet",
    names: &[
        "efficientnet_b0",
        "efficientnet_b1",
        "efficientnet_b2",
        "efficientnet_b3",
        "efficientnet_b4",
        "efficientnet_b5",
        "efficientnet_b6",
        "efficientnet_b7",
        "efficientnet_v2_s",
        "efficientnet_v2_m",
        "efficientnet_v2_l",
    ],
    detect: |dict| {
        (dict.contains("features.0.0.weight")
            && dict.contains("features.1.0.block.0.0.weight")
            && classifier_or_none(dict, "classifier.1"))
        .then(|| detect(dict).map(Arch::new))
    },
    standard: |name, classes, dict| {
        let cfg = EfficientNetConfig::standard(name, classes)?;
        Some(sized(cfg, dict, EfficientNetConfig::with_widths_of))
    },
};

impl EfficientNetConfig {
    pub fn standard(name: &str, classes: usize) -> Option<EfficientNetConfig> {
        let &(variant, stages, width, depth, eps, last) = VARIANTS.iter().find(|v| v.0 == name)?;
        let adjust = |c: usize| make_divisible(c as f64 * width);
        let stages: Vec<Vec<Block>> = stages
            .iter()
            .map(|&(kind, ratio, kernel, stride, input, out, layers)| {
                let count = (layers as f64 * depth).ceil() as usize;
                (0..count)
                    .map(|i| {
                        let input = if i == 0 { adjust(input) } else { adjust(out) };
                        let expanded = make_divisible((input * ratio) as f64);
                        Block {
                            kind,
                            expands: expanded != input,
                            kernel,
                            expanded,
                            out: adjust(out),
                            squeeze: (kind == Kind::MbConv).then(|| (input / 4).max(1)),
                            stride: if i == 0 { stride } else { 1 },
                        }
                    })
                    .collect()
            })
            .collect();
        let last_stage = stages.last().and_then(|s| s.last()).map_or(0, |b| b.out);
        Some(EfficientNetConfig {
            variant,
            stem: adjust(stages_first_input(name)),
            stages,
            last_conv: last.unwrap_or(4 * last_stage),
            classes,
            classifier: true,
            eps,
        })
    }

    /// The same layout with the block counts, kernels, widths and class count of `dict`.
    pub fn with_widths_of(mut self, dict: &StateDict) -> EfficientNetConfig {
        let rows = |name: &str| rows(dict, name);
        if let Some(n) = rows("features.0.0.weight") {
            self.stem = n;
        }
        for (s, stage) in self.stages.iter_mut().enumerate() {
            let count = (0..)
                .take_while(|i| dict.contains(&format!("features.{}.{i}.block.0.0.weight", s + 1)))
                .count();
            if count > 0 {
                let repeat = Block {
                    stride: 1,
                    ..*stage.last().expect("stages have blocks")
                };
                stage.resize(count, repeat);
            }
            for (i, block) in stage.iter_mut().enumerate() {
                let p = format!("features.{}.{i}.block", s + 1);
                match block.kind {
                    Kind::MbConv => {
                        let first = conv_shape(dict, &format!("{p}.0.0.weight"));
                        block.expands = matches!(first, Some([_, _, 1, 1]));
                        let dw = usize::from(block.expands);
                        if let Some([out, _, k, _]) =
                            conv_shape(dict, &format!("{p}.{dw}.0.weight"))
                        {
                            (block.expanded, block.kernel) = (out, k);
                        }
                        block.squeeze = rows(&format!("{p}.{}.fc1.weight", dw + 1));
                        if let Some(n) = rows(&format!("{p}.{}.0.weight", dw + 2)) {
                            block.out = n;
                        }
                    }
                    Kind::Fused => {
                        let project = rows(&format!("{p}.1.0.weight"));
                        block.expands = project.is_some();
                        if let Some([width, _, k, _]) = conv_shape(dict, &format!("{p}.0.0.weight"))
                        {
                            block.kernel = k;
                            match project {
                                Some(out) => (block.expanded, block.out) = (width, out),
                                None => block.out = width,
                            }
                        }
                    }
                }
            }
        }
        let last = format!("features.{}.0.weight", self.stages.len() + 1);
        if let Some(n) = rows(&last) {
            self.last_conv = n;
        }
        if let Some(n) = rows("classifier.1.weight") {
            self.classes = n;
        }
        self.classifier = has_classifier(dict, "classifier.1");
        self
    }
}

/// The stem's width before the multiplier: the first stage's input.
fn stages_first_input(name: &str) -> usize {
    VARIANTS
        .iter()
        .find(|v| v.0 == name)
        .map_or(32, |v| v.1[0].4)
}

/// The variant whose block counts (and, between B1 and B2, last conv width) the checkpoint has.
fn detect(dict: &StateDict) -> Result<EfficientNetConfig> {
    let counts: Vec<usize> = (1..)
        .map(|s| {
            (0..)
                .take_while(|i| dict.contains(&format!("features.{s}.{i}.block.0.0.weight")))
                .count()
        })
        .take_while(|&n| n > 0)
        .collect();
    let last_conv = dict
        .shape(&format!("features.{}.0.weight", counts.len() + 1))
        .and_then(|s| s.first().copied());
    for &(name, ..) in &VARIANTS {
        let cfg = EfficientNetConfig::standard(name, 1000).expect("a known variant");
        let standard_counts: Vec<usize> = cfg.stages.iter().map(Vec::len).collect();
        if standard_counts == counts && Some(cfg.last_conv) == last_conv {
            return Ok(cfg.with_widths_of(dict));
        }
    }
    for &(name, ..) in &VARIANTS {
        let cfg = EfficientNetConfig::standard(name, 1000).expect("a known variant");
        if cfg.stages.iter().map(Vec::len).eq(counts.iter().copied()) {
            return Ok(cfg.with_widths_of(dict));
        }
    }
    bail!("unrecognised EfficientNet layout: blocks per stage {counts:?}")
}

fn block(b: &mut Builder, name: &str, x: NodeId, block: &Block, eps: f64) -> Result<NodeId> {
    let silu = Some(Act::Func(Function::Silu));
    let p = |j: usize| format!("{name}.block.{j}");
    let input = b.shape(x)[1];
    let pad = block.kernel.saturating_sub(1) / 2;
    let mut y = x;
    match block.kind {
        Kind::MbConv => {
            let mut j = 0;
            if block.expands {
                let expand = ConvSpec::new(block.expanded, 1, 0, false);
                y = conv_norm_act(b, &p(j), y, expand, eps, silu)?;
                j += 1;
            }
            let depthwise = ConvSpec::new(block.expanded, block.kernel, pad, false)
                .stride(block.stride)
                .groups(block.expanded);
            y = conv_norm_act(b, &p(j), y, depthwise, eps, silu)?;
            j += 1;
            if let Some(squeeze) = block.squeeze {
                let silu = Act::Func(Function::Silu);
                y = squeeze_excitation(b, &p(j), y, squeeze, silu, Function::Sigmoid)?;
                j += 1;
            }
            let project = ConvSpec::new(block.out, 1, 0, false);
            y = conv_norm_act(b, &p(j), y, project, eps, None)?;
        }
        Kind::Fused => {
            if block.expands {
                let expand =
                    ConvSpec::new(block.expanded, block.kernel, pad, false).stride(block.stride);
                y = conv_norm_act(b, &p(0), y, expand, eps, silu)?;
                let project = ConvSpec::new(block.out, 1, 0, false);
                y = conv_norm_act(b, &p(1), y, project, eps, None)?;
            } else {
                let conv = ConvSpec::new(block.out, block.kernel, pad, false).stride(block.stride);
                y = conv_norm_act(b, &p(0), y, conv, eps, silu)?;
            }
        }
    }
    if block.stride == 1 && input == block.out {
        y = b.op(
            &format!("{name}.stochastic_depth"),
            Op::Dropout(Dropout),
            &[y],
        )?;
        y = b.op(&format!("{name}.add"), Op::Add(Add), &[y, x])?;
    }
    Ok(y)
}

impl Layout for EfficientNetConfig {
    fn name(&self) -> String {
        self.variant.into()
    }

    fn build(&self, b: &mut Builder) -> Result<()> {
        let silu = Some(Act::Func(Function::Silu));
        let mut x = b.last();
        let stem = ConvSpec::new(self.stem, 3, 1, false).stride(2);
        x = conv_norm_act(b, "features.0", x, stem, self.eps, silu)?;
        for (s, stage) in self.stages.iter().enumerate() {
            for (i, blk) in stage.iter().enumerate() {
                x = block(b, &format!("features.{}.{i}", s + 1), x, blk, self.eps)?;
            }
        }
        let last = format!("features.{}", self.stages.len() + 1);
        let spec = ConvSpec::new(self.last_conv, 1, 0, false);
        x = conv_norm_act(b, &last, x, spec, self.eps, silu)?;
        x = b.global_avg_pool("avgpool", x)?;
        x = b.op("flatten", Op::Flatten(Flatten), &[x])?;
        if self.classifier {
            x = b.op("classifier.0", Op::Dropout(Dropout), &[x])?;
            b.classifier("classifier.1", x, self.classes)?;
        }
        Ok(())
    }

    /// `features[-1]`, the last conv block.
    fn cam_layer(&self) -> Option<String> {
        Some(format!("features.{}", self.stages.len() + 1))
    }

    fn input_size(&self) -> Option<[usize; 2]> {
        None
    }
}
