//! timm's EfficientNet (B0-B8, V2) and MobileNetV3 (small, large), which timm builds with one
//! block builder: `conv_stem` and `bn1`, stages `blocks.S` of blocks `blocks.S.I`, then
//!
//! - EfficientNet: `conv_head` (1x1) and `bn2`, `global_pool`, `classifier`;
//! - MobileNetV3: `global_pool`, `conv_head` (1x1 with bias, on the pooled features), `act2`,
//!   `flatten`, `classifier`.
//!
//! Blocks, told apart by their weights' names: depthwise-separable (`conv_dw`, `bn1`, `se`,
//! `conv_pw`, `bn2`), inverted residual (`conv_pw`, `bn1`, `conv_dw`, `bn2`, `se`, `conv_pwl`,
//! `bn3`), edge residual (V2's fused block: `conv_exp`, `bn1`, `se`, `conv_pwl`, `bn2`) and conv +
//! norm (`conv`, `bn1`). Each adds its input back (`add`, after `drop_path`) where the stride is 1
//! and the width kept. Norms are `BatchNormAct2d` (see [`timm_norm_act`]); squeeze-and-excitation
//! is `se.conv_reduce`, `se.act1`, `se.conv_expand`, `se.gate`.
//!
//! Widths, kernels, expansions and SE widths come from the checkpoint; what it does not hold does
//! not vary within these families and comes from timm's definitions: the first block of each
//! stage strides (by 1, 2, 2, 2, 1, 2, 1 over seven stages; six stages are V2-S's 1, 2, 2, 2, 1, 2
//! or MobileNetV3-small's 2, 2, 2, 1, 2, 1), EfficientNet's activations are SiLU with sigmoid
//! gates, MobileNetV3's are ReLU in its first stages (three in large, two in small), hard-swish
//! after, ReLU with hard-sigmoid gates in SE. The `tf_` ports use TensorFlow's "same" padding,
//! which the weights cannot show; they are refused by name where a config.json gives it.

use anyhow::{bail, Result};

use super::blocks::{timm_norm_act, Act};
use super::builder::{Builder, ConvSpec};
use super::{conv_shape, read_head, rows, Arch, Family, Layout};
use crate::model::graph::NodeId;
use crate::model::load::StateDict;
use crate::model::ops::{Add, Dropout, Flatten, Function, Gate, Op};

/// Which of timm's two model classes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    EfficientNet,
    MobileNetV3,
}

/// A block's structure, from its weights' names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockKind {
    DepthwiseSeparable,
    InvertedResidual,
    EdgeResidual,
    ConvNormAct,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Block {
    pub kind: BlockKind,
    pub kernel: usize,
    /// Width inside the block (the input's where it does not expand).
    pub expanded: usize,
    pub out: usize,
    /// SE squeeze width.
    pub squeeze: Option<usize>,
    pub stride: usize,
}

#[derive(Debug, Clone)]
pub struct TimmEfficientNetConfig {
    pub kind: Kind,
    pub stem: usize,
    pub stages: Vec<Vec<Block>>,
    /// Width of `conv_head`.
    pub head_width: usize,
    pub classes: usize,
    /// The final linear layer, none in a backbone saved without it.
    pub head: Option<String>,
}

pub const FAMILY: Family = Family {
    title: "timm EfficientNet/MobileNetV3",
    names: &[],
    detect: |dict| {
        (dict.contains("conv_stem.weight") && dict.contains("blocks.0.0.bn1.weight"))
            .then(|| TimmEfficientNetConfig::of(dict).map(Arch::new))
    },
    standard: |_, _, _| None,
};

/// Stride of each stage's first block, by stage count and kind.
fn stage_strides(kind: Kind, stages: usize) -> Option<&'static [usize]> {
    match (stages, kind) {
        (7, _) => Some(&[1, 2, 2, 2, 1, 2, 1]),
        (6, Kind::EfficientNet) => Some(&[1, 2, 2, 2, 1, 2]),
        (6, Kind::MobileNetV3) => Some(&[2, 2, 2, 1, 2, 1]),
        _ => None,
    }
}

impl TimmEfficientNetConfig {
    /// The layout of a checkpoint.
    fn of(dict: &StateDict) -> Result<TimmEfficientNetConfig> {
        let kind = match dict.contains("conv_head.bias") {
            true => Kind::MobileNetV3,
            false => Kind::EfficientNet,
        };
        let count = (0..)
            .take_while(|s| {
                dict.names()
                    .any(|k| k.starts_with(&format!("blocks.{s}.0.")))
            })
            .count();
        let Some(strides) = stage_strides(kind, count) else {
            bail!("unrecognised timm {kind:?} layout: {count} stages");
        };
        let mut width = rows(dict, "conv_stem.weight").unwrap_or(0);
        let mut stages = Vec::new();
        for (s, &stride) in strides.iter().enumerate() {
            let mut stage = Vec::new();
            while let Some(block) = read_block(dict, &format!("blocks.{s}.{}", stage.len()), width)
            {
                let stride = if stage.is_empty() { stride } else { 1 };
                width = block.out;
                stage.push(Block { stride, ..block });
            }
            stages.push(stage);
        }
        let mut cfg = TimmEfficientNetConfig {
            kind,
            stem: rows(dict, "conv_stem.weight").unwrap_or(0),
            stages,
            head_width: rows(dict, "conv_head.weight").unwrap_or(0),
            classes: 1000,
            head: Some("classifier".into()),
        };
        read_head(dict, "classifier", &mut cfg.head, &mut cfg.classes);
        Ok(cfg)
    }

    /// The activation of stage `s`'s blocks.
    fn act(&self, s: usize) -> Act {
        match self.kind {
            Kind::EfficientNet => Act::Func(Function::Silu),
            Kind::MobileNetV3 => {
                let relu_stages = if self.stages.len() == 7 { 3 } else { 2 };
                match s < relu_stages {
                    true => Act::Relu,
                    false => Act::Func(Function::Hardswish),
                }
            }
        }
    }

    /// The activation inside SE and its gate.
    fn squeeze_acts(&self) -> (Act, Function) {
        match self.kind {
            Kind::EfficientNet => (Act::Func(Function::Silu), Function::Sigmoid),
            Kind::MobileNetV3 => (Act::Relu, Function::Hardsigmoid),
        }
    }
}

/// Block `name` of a checkpoint taking `input` channels, stride 1; `None` where there is none.
fn read_block(dict: &StateDict, name: &str, input: usize) -> Option<Block> {
    let w = |part: &str| format!("{name}.{part}.weight");
    let kernel = |part: &str| conv_shape(dict, &w(part)).map_or(0, |[_, _, kh, _]| kh);
    let squeeze = rows(dict, &w("se.conv_reduce"));
    let block = |kind, kernel, expanded, out| Block {
        kind,
        kernel,
        expanded,
        out,
        squeeze,
        stride: 1,
    };
    if dict.contains(&w("conv_exp")) {
        let expanded = rows(dict, &w("conv_exp"))?;
        let out = rows(dict, &w("conv_pwl"))?;
        Some(block(
            BlockKind::EdgeResidual,
            kernel("conv_exp"),
            expanded,
            out,
        ))
    } else if dict.contains(&w("conv_pwl")) {
        let expanded = rows(dict, &w("conv_pw"))?;
        let out = rows(dict, &w("conv_pwl"))?;
        Some(block(
            BlockKind::InvertedResidual,
            kernel("conv_dw"),
            expanded,
            out,
        ))
    } else if dict.contains(&w("conv_dw")) {
        let out = rows(dict, &w("conv_pw"))?;
        Some(block(
            BlockKind::DepthwiseSeparable,
            kernel("conv_dw"),
            input,
            out,
        ))
    } else if dict.contains(&w("conv")) {
        let out = rows(dict, &w("conv"))?;
        Some(block(BlockKind::ConvNormAct, kernel("conv"), out, out))
    } else {
        None
    }
}

/// timm's `SqueezeExcite` at `{name}`: mean over the map, `conv_reduce`, `act1`, `conv_expand`,
/// `gate`, and the product.
fn squeeze_excite(
    b: &mut Builder,
    name: &str,
    x: NodeId,
    squeeze: usize,
    (act, gate): (Act, Function),
) -> Result<NodeId> {
    let p = |s: &str| format!("{name}.{s}");
    let channels = b.shape(x)[1];
    let mut s = b.global_avg_pool(&p("mean"), x)?;
    s = b.conv(&p("conv_reduce"), s, ConvSpec::new(squeeze, 1, 0, true))?;
    s = match act {
        Act::Relu => b.relu(&p("act1"), s)?,
        Act::Func(f) => b.activation(&p("act1"), s, f)?,
    };
    s = b.conv(&p("conv_expand"), s, ConvSpec::new(channels, 1, 0, true))?;
    s = b.activation(&p("gate"), s, gate)?;
    b.op(&p("mul"), Op::Gate(Gate), &[x, s])
}

fn block(
    b: &mut Builder,
    cfg: &TimmEfficientNetConfig,
    name: &str,
    x: NodeId,
    blk: &Block,
    act: Act,
) -> Result<NodeId> {
    let p = |s: &str| format!("{name}.{s}");
    let input = b.shape(x)[1];
    let k = blk.kernel;
    let spatial = ConvSpec::new(blk.expanded, k, k / 2, false).stride(blk.stride);
    let mut y = x;
    let se = |b: &mut Builder, y| match blk.squeeze {
        Some(squeeze) => squeeze_excite(b, &p("se"), y, squeeze, cfg.squeeze_acts()),
        None => Ok(y),
    };
    match blk.kind {
        BlockKind::DepthwiseSeparable => {
            y = b.conv(&p("conv_dw"), y, spatial.groups(blk.expanded))?;
            y = timm_norm_act(b, &p("bn1"), y, Some(act))?;
            y = se(b, y)?;
            y = b.conv(&p("conv_pw"), y, ConvSpec::new(blk.out, 1, 0, false))?;
            y = timm_norm_act(b, &p("bn2"), y, None)?;
        }
        BlockKind::InvertedResidual => {
            y = b.conv(&p("conv_pw"), y, ConvSpec::new(blk.expanded, 1, 0, false))?;
            y = timm_norm_act(b, &p("bn1"), y, Some(act))?;
            y = b.conv(&p("conv_dw"), y, spatial.groups(blk.expanded))?;
            y = timm_norm_act(b, &p("bn2"), y, Some(act))?;
            y = se(b, y)?;
            y = b.conv(&p("conv_pwl"), y, ConvSpec::new(blk.out, 1, 0, false))?;
            y = timm_norm_act(b, &p("bn3"), y, None)?;
        }
        BlockKind::EdgeResidual => {
            y = b.conv(&p("conv_exp"), y, spatial)?;
            y = timm_norm_act(b, &p("bn1"), y, Some(act))?;
            y = se(b, y)?;
            y = b.conv(&p("conv_pwl"), y, ConvSpec::new(blk.out, 1, 0, false))?;
            y = timm_norm_act(b, &p("bn2"), y, None)?;
        }
        BlockKind::ConvNormAct => {
            y = b.conv(&p("conv"), y, spatial)?;
            y = timm_norm_act(b, &p("bn1"), y, Some(act))?;
        }
    }
    if blk.stride == 1 && input == blk.out {
        y = b.op(&p("drop_path"), Op::Dropout(Dropout), &[y])?;
        y = b.op(&p("add"), Op::Add(Add), &[y, x])?;
    }
    Ok(y)
}

impl Layout for TimmEfficientNetConfig {
    fn name(&self) -> String {
        let blocks: Vec<usize> = self.stages.iter().map(Vec::len).collect();
        let kind = match self.kind {
            Kind::EfficientNet => "efficientnet",
            Kind::MobileNetV3 => "mobilenetv3",
        };
        format!("timm {kind} (blocks {blocks:?})")
    }

    fn build(&self, b: &mut Builder) -> Result<()> {
        if self.stages.iter().any(Vec::is_empty) {
            bail!("unrecognised timm layout: a stage without blocks");
        }
        let stem_act = match self.kind {
            Kind::EfficientNet => Act::Func(Function::Silu),
            Kind::MobileNetV3 => Act::Func(Function::Hardswish),
        };
        let mut x = b.last();
        x = b.conv(
            "conv_stem",
            x,
            ConvSpec::new(self.stem, 3, 1, false).stride(2),
        )?;
        x = timm_norm_act(b, "bn1", x, Some(stem_act))?;
        for (s, stage) in self.stages.iter().enumerate() {
            for (i, blk) in stage.iter().enumerate() {
                x = block(b, self, &format!("blocks.{s}.{i}"), x, blk, self.act(s))?;
            }
        }
        let head_conv = |bias| ConvSpec::new(self.head_width, 1, 0, bias);
        match self.kind {
            Kind::EfficientNet => {
                x = b.conv("conv_head", x, head_conv(false))?;
                x = timm_norm_act(b, "bn2", x, Some(stem_act))?;
                x = b.global_avg_pool("global_pool.pool", x)?;
                x = b.op("global_pool.flatten", Op::Flatten(Flatten), &[x])?;
            }
            Kind::MobileNetV3 => {
                x = b.global_avg_pool("global_pool", x)?;
                x = b.conv("conv_head", x, head_conv(true))?;
                x = b.activation("act2", x, Function::Hardswish)?;
                x = b.op("flatten", Op::Flatten(Flatten), &[x])?;
            }
        }
        b.head(self.head.as_deref(), x, self.classes)
    }

    /// EfficientNet: `bn2` (the head conv's norm and SiLU, the last map); MobileNetV3: `blocks`,
    /// the last stage (its head conv runs on the pooled features).
    fn cam_layer(&self) -> Option<String> {
        Some(
            match self.kind {
                Kind::EfficientNet => "bn2",
                Kind::MobileNetV3 => "blocks",
            }
            .into(),
        )
    }

    fn input_size(&self) -> Option<[usize; 2]> {
        None
    }
}
