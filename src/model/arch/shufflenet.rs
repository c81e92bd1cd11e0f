//! torchvision's ShuffleNetV2 x0.5/x1.0/x1.5/x2.0: `conv1` (conv 3x3/2, bn, relu), `maxpool`,
//! stages `stage2..4` of blocks, `conv5` (1x1 conv, bn, relu), the functional `mean` over H and
//! W (here global average pooling, `mean`, and `flatten`), `fc`.
//!
//! A block `stageS.I` with stride 2 runs `branch1` (depthwise 3x3/2, bn, 1x1 conv, bn, relu) and
//! `branch2` (1x1 conv, bn, relu, depthwise 3x3, bn, 1x1 conv, bn, relu) on its input; with stride
//! 1 it splits its input in two (`chunk.0`, `chunk.1`) and runs `branch2` on the second half.
//! Either way the halves are concatenated (`cat`) and the channels shuffled in two groups
//! (`channel_shuffle`), functional steps of PyTorch's `forward`.

use anyhow::{bail, Result};

use super::blocks::conv_bn_at;
use super::builder::{Builder, ConvSpec};
use super::{read_head, rows, sized, Arch, Family, Layout};
use crate::model::graph::NodeId;
use crate::model::load::StateDict;
use crate::model::ops::{ChannelShuffle, ChannelSlice, Concat, Flatten, Op, Pool, PoolKind};

#[derive(Debug, Clone)]
pub struct ShuffleNetConfig {
    pub variant: Option<&'static str>,
    pub repeats: [usize; 3],
    /// conv1, stage2, stage3, stage4 and conv5 widths.
    pub widths: [usize; 5],
    pub classes: usize,
    /// The final linear layer (`fc`, the Linear of a fine-tuned Sequential there, or none in a
    /// backbone saved without it).
    pub head: Option<String>,
}

const VARIANTS: [(&str, [usize; 5]); 4] = [
    ("shufflenet_v2_x0_5", [24, 48, 96, 192, 1024]),
    ("shufflenet_v2_x1_0", [24, 116, 232, 464, 1024]),
    ("shufflenet_v2_x1_5", [24, 176, 352, 704, 1024]),
    ("shufflenet_v2_x2_0", [24, 244, 488, 976, 2048]),
];

pub const FAMILY: Family = Family {
    title: "torchvision ShuffleNetV2",
    names: &[
        "shufflenet_v2_x0_5",
        "shufflenet_v2_x1_0",
        "shufflenet_v2_x1_5",
        "shufflenet_v2_x2_0",
    ],
    detect: |dict| {
        (dict.contains("conv1.0.weight") && dict.contains("stage2.0.branch1.0.weight"))
            .then(|| detect(dict).map(Arch::new))
    },
    standard: |name, classes, dict| {
        let cfg = ShuffleNetConfig::standard(name, classes)?;
        Some(sized(cfg, dict, ShuffleNetConfig::with_widths_of))
    },
};

impl ShuffleNetConfig {
    pub fn standard(name: &str, classes: usize) -> Option<ShuffleNetConfig> {
        let &(variant, widths) = VARIANTS.iter().find(|v| v.0 == name)?;
        Some(ShuffleNetConfig {
            variant: Some(variant),
            repeats: [4, 8, 4],
            widths,
            classes,
            head: Some("fc".into()),
        })
    }

    /// The same layout with the block counts, widths and class count of `dict`.
    pub fn with_widths_of(mut self, dict: &StateDict) -> ShuffleNetConfig {
        let rows = |name: &str| rows(dict, name);
        if let Some(n) = rows("conv1.0.weight") {
            self.widths[0] = n;
        }
        for s in 0..3 {
            let stage = format!("stage{}", s + 2);
            let count = (0..)
                .take_while(|i| dict.contains(&format!("{stage}.{i}.branch2.0.weight")))
                .count();
            if count > 0 {
                self.repeats[s] = count;
            }
            // Each branch gives half the stage's width.
            if let Some(n) = rows(&format!("{stage}.0.branch2.5.weight")) {
                self.widths[s + 1] = 2 * n;
            }
        }
        if let Some(n) = rows("conv5.0.weight") {
            self.widths[4] = n;
        }
        read_head(dict, "fc", &mut self.head, &mut self.classes);
        self.variant = VARIANTS.iter().find(|v| v.1 == self.widths).map(|v| v.0);
        self
    }
}

fn detect(dict: &StateDict) -> Result<ShuffleNetConfig> {
    for s in 2..=4 {
        if !dict.contains(&format!("stage{s}.0.branch1.0.weight")) {
            bail!("unrecognised ShuffleNetV2 layout: no stage{s}.0.branch1");
        }
    }
    Ok(ShuffleNetConfig::standard("shufflenet_v2_x1_0", 1000)
        .expect("a known variant")
        .with_widths_of(dict))
}

/// `branch2`: 1x1, depthwise 3x3 (with the block's stride), 1x1, each with bn; relus after the
/// first and last.
fn branch2(b: &mut Builder, p: &str, x: NodeId, half: usize, stride: usize) -> Result<NodeId> {
    let mut y = conv_bn_at(b, p, 0, x, ConvSpec::new(half, 1, 0, false), true)?;
    let depthwise = ConvSpec::new(half, 3, 1, false).stride(stride).groups(half);
    y = conv_bn_at(b, p, 3, y, depthwise, false)?;
    conv_bn_at(b, p, 5, y, ConvSpec::new(half, 1, 0, false), true)
}

fn block(b: &mut Builder, name: &str, x: NodeId, width: usize, stride: usize) -> Result<NodeId> {
    let p = |s: &str| format!("{name}.{s}");
    let half = width / 2;
    let (left, right) = if stride == 1 {
        let c = b.shape(x)[1];
        let first = b.op(
            &p("chunk.0"),
            Op::ChannelSlice(ChannelSlice {
                start: 0,
                len: c / 2,
            }),
            &[x],
        )?;
        let second = ChannelSlice {
            start: c / 2,
            len: c - c / 2,
        };
        let second = b.op(&p("chunk.1"), Op::ChannelSlice(second), &[x])?;
        (first, branch2(b, &p("branch2"), second, half, 1)?)
    } else {
        let cin = b.shape(x)[1];
        let depthwise = ConvSpec::new(cin, 3, 1, false).stride(stride).groups(cin);
        let l = conv_bn_at(b, &p("branch1"), 0, x, depthwise, false)?;
        let l = conv_bn_at(
            b,
            &p("branch1"),
            2,
            l,
            ConvSpec::new(half, 1, 0, false),
            true,
        )?;
        (l, branch2(b, &p("branch2"), x, half, stride)?)
    };
    let out = b.op(&p("cat"), Op::Concat(Concat), &[left, right])?;
    b.op(
        &p("channel_shuffle"),
        Op::ChannelShuffle(ChannelShuffle { groups: 2 }),
        &[out],
    )
}

impl Layout for ShuffleNetConfig {
    fn name(&self) -> String {
        self.variant.unwrap_or("shufflenet_v2-like").into()
    }

    fn build(&self, b: &mut Builder) -> Result<()> {
        let mut x = b.last();
        x = conv_bn_at(
            b,
            "conv1",
            0,
            x,
            ConvSpec::new(self.widths[0], 3, 1, false).stride(2),
            true,
        )?;
        x = b.pool("maxpool", x, Pool::square(PoolKind::Max, 3, 2, 1, false))?;
        for s in 0..3 {
            for i in 0..self.repeats[s] {
                let stride = if i == 0 { 2 } else { 1 };
                x = block(
                    b,
                    &format!("stage{}.{i}", s + 2),
                    x,
                    self.widths[s + 1],
                    stride,
                )?;
            }
        }
        x = conv_bn_at(
            b,
            "conv5",
            0,
            x,
            ConvSpec::new(self.widths[4], 1, 0, false),
            true,
        )?;
        x = b.global_avg_pool("mean", x)?;
        x = b.op("flatten", Op::Flatten(Flatten), &[x])?;
        b.head(self.head.as_deref(), x, self.classes)?;
        Ok(())
    }

    /// `conv5`, the last conv block.
    fn cam_layer(&self) -> Option<String> {
        Some("conv5".into())
    }

    fn input_size(&self) -> Option<[usize; 2]> {
        None
    }
}
