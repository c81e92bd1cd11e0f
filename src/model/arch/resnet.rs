//! torchvision's ResNet: stem `conv1, bn1, relu, maxpool`, four stages `layerS.B` of basic or
//! bottleneck blocks (stride on the 3x3 conv, `downsample.0/1` where the shape changes),
//! `avgpool` to 1x1 and `fc` (or the Linear of a fine-tuned `fc = Sequential(Dropout, Linear)`,
//! or no head at all in a backbone). ResNeXt is the same with a grouped 3x3 conv and wider blocks, Wide
//! ResNet with twice the inner width; both are read from the weights.
//!
//! PyTorch reuses one `relu` module several times per block; here each use is its own node:
//! `relu1`, `relu2` (and `relu3` in a bottleneck) after the residual `add`. The block's name
//! (`layer4.2`) stands for its output.

use anyhow::{bail, Result};

use super::builder::{Builder, ConvSpec};
use super::{conv_shape, read_head, rows, sized, Arch, Family, Layout};
use crate::model::graph::NodeId;
use crate::model::load::StateDict;
use crate::model::ops::{Add, Flatten, Op, Pool, PoolKind};

#[derive(Debug, Clone)]
pub struct ResNetConfig {
    pub blocks: [usize; 4],
    pub bottleneck: bool,
    /// Channels out of the stem convolution (64 in torchvision).
    pub stem: usize,
    /// Per stage: the inner width of each block and its output width.
    pub widths: [(usize, usize); 4],
    /// Groups of the bottleneck's 3x3 conv (ResNeXt).
    pub groups: usize,
    pub classes: usize,
    /// The final linear layer: `fc`, `fc.1` in a fine-tuned `Sequential(Dropout, Linear)`, or
    /// none in a backbone saved without its head.
    pub head: Option<String>,
}

const DEPTHS: [(u32, [usize; 4], bool); 5] = [
    (18, [2, 2, 2, 2], false),
    (34, [3, 4, 6, 3], false),
    (50, [3, 4, 6, 3], true),
    (101, [3, 4, 23, 3], true),
    (152, [3, 8, 36, 3], true),
];

pub const FAMILY: Family = Family {
    title: "torchvision ResNet",
    names: &[
        "resnet18",
        "resnet34",
        "resnet50",
        "resnet101",
        "resnet152",
        "resnext50_32x4d",
        "resnext101_32x8d",
        "resnext101_64x4d",
        "wide_resnet50_2",
        "wide_resnet101_2",
    ],
    detect: |dict| {
        (dict.contains("conv1.weight")
            && dict.contains("layer1.0.conv1.weight")
            && dict.contains("layer4.0.conv1.weight"))
        .then(|| detect(dict).map(Arch::new))
    },
    standard: |name, classes, dict| {
        let cfg = ResNetConfig::standard(name, classes)?;
        Some(sized(cfg, dict, ResNetConfig::with_widths_of))
    },
};

impl ResNetConfig {
    /// `resnet18..152`, `resnextD_GxWd` (G groups of W channels in the first stage) and
    /// `wide_resnetD_2`, as in torchvision.
    pub fn standard(name: &str, classes: usize) -> Option<ResNetConfig> {
        let (depth, groups, width_per_group): (u32, usize, usize) =
            if let Some(rest) = name.strip_prefix("resnext") {
                let (depth, shape) = rest.split_once('_')?;
                let (g, w) = shape.strip_suffix('d')?.split_once('x')?;
                (depth.parse().ok()?, g.parse().ok()?, w.parse().ok()?)
            } else if let Some(rest) = name.strip_prefix("wide_resnet") {
                (rest.strip_suffix("_2")?.parse().ok()?, 1, 128)
            } else {
                (name.strip_prefix("resnet")?.parse().ok()?, 1, 64)
            };
        let (_, blocks, bottleneck) = DEPTHS.iter().find(|(d, _, _)| *d == depth)?;
        if !bottleneck && (groups, width_per_group) != (1, 64) {
            return None;
        }
        let expansion = if *bottleneck { 4 } else { 1 };
        let widths =
            [64, 128, 256, 512].map(|w| (w * width_per_group / 64 * groups, w * expansion));
        Some(ResNetConfig {
            blocks: *blocks,
            bottleneck: *bottleneck,
            stem: 64,
            widths,
            groups,
            classes,
            head: Some("fc".into()),
        })
    }

    /// The same layout with the widths and class count found in `dict`.
    pub fn with_widths_of(mut self, dict: &StateDict) -> ResNetConfig {
        let rows = |name: &str| rows(dict, name);
        if let Some(n) = rows("conv1.weight") {
            self.stem = n;
        }
        let last_conv = if self.bottleneck { "conv3" } else { "conv2" };
        for (s, w) in self.widths.iter_mut().enumerate() {
            if let Some(n) = rows(&format!("layer{}.0.conv1.weight", s + 1)) {
                w.0 = n;
            }
            if let Some(n) = rows(&format!("layer{}.0.{last_conv}.weight", s + 1)) {
                w.1 = n;
            }
        }
        read_head(dict, "fc", &mut self.head, &mut self.classes);
        if self.bottleneck {
            // A grouped conv's weight holds inner / groups input channels.
            if let Some([inner, per_group, _, _]) = conv_shape(dict, "layer1.0.conv2.weight") {
                if per_group > 0 && inner % per_group == 0 {
                    self.groups = inner / per_group;
                }
            }
        }
        self
    }
}

impl Layout for ResNetConfig {
    fn name(&self) -> String {
        let inner = self.widths[0].0;
        DEPTHS
            .iter()
            .find(|(_, b, bn)| *b == self.blocks && *bn == self.bottleneck)
            .map(|(d, _, _)| {
                if self.groups > 1 {
                    format!("resnext{d}_{}x{}d", self.groups, inner / self.groups)
                } else if self.bottleneck && inner == self.widths[0].1 / 2 {
                    format!("wide_resnet{d}_2")
                } else {
                    format!("resnet{d}")
                }
            })
            .unwrap_or_else(|| {
                let kind = if self.bottleneck {
                    "bottleneck"
                } else {
                    "basic"
                };
                format!("resnet-like ({kind} blocks {:?})", self.blocks)
            })
    }

    fn build(&self, b: &mut Builder) -> Result<()> {
        build(self, b)
    }

    /// `layer4[-1]`, the last block.
    fn cam_layer(&self) -> Option<String> {
        Some("layer4".into())
    }

    fn input_size(&self) -> Option<[usize; 2]> {
        None
    }
}

fn block(
    b: &mut Builder,
    cfg: &ResNetConfig,
    name: &str,
    x: NodeId,
    (inner, out): (usize, usize),
    stride: usize,
) -> Result<NodeId> {
    let cin = b.shape(x)[1];
    let p = |s: &str| format!("{name}.{s}");
    let mut y;
    if cfg.bottleneck {
        y = b.conv(&p("conv1"), x, ConvSpec::new(inner, 1, 0, false))?;
        y = b.batch_norm(&p("bn1"), y, 1e-5)?;
        y = b.relu(&p("relu1"), y)?;
        let grouped = ConvSpec::new(inner, 3, 1, false)
            .stride(stride)
            .groups(cfg.groups);
        y = b.conv(&p("conv2"), y, grouped)?;
        y = b.batch_norm(&p("bn2"), y, 1e-5)?;
        y = b.relu(&p("relu2"), y)?;
        y = b.conv(&p("conv3"), y, ConvSpec::new(out, 1, 0, false))?;
        y = b.batch_norm(&p("bn3"), y, 1e-5)?;
    } else {
        y = b.conv(
            &p("conv1"),
            x,
            ConvSpec::new(inner, 3, 1, false).stride(stride),
        )?;
        y = b.batch_norm(&p("bn1"), y, 1e-5)?;
        y = b.relu(&p("relu1"), y)?;
        y = b.conv(&p("conv2"), y, ConvSpec::new(out, 3, 1, false))?;
        y = b.batch_norm(&p("bn2"), y, 1e-5)?;
    }
    let identity = if stride != 1 || cin != out {
        let d = b.conv(
            &p("downsample.0"),
            x,
            ConvSpec::new(out, 1, 0, false).stride(stride),
        )?;
        b.batch_norm(&p("downsample.1"), d, 1e-5)?
    } else {
        x
    };
    let sum = b.op(&p("add"), Op::Add(Add), &[y, identity])?;
    let last_relu = if cfg.bottleneck { "relu3" } else { "relu2" };
    b.relu(&p(last_relu), sum)
}

fn build(cfg: &ResNetConfig, b: &mut Builder) -> Result<()> {
    let mut x = b.last();
    x = b.conv("conv1", x, ConvSpec::new(cfg.stem, 7, 3, false).stride(2))?;
    x = b.batch_norm("bn1", x, 1e-5)?;
    x = b.relu("relu", x)?;
    x = b.pool("maxpool", x, Pool::square(PoolKind::Max, 3, 2, 1, false))?;
    for (s, (&count, &widths)) in cfg.blocks.iter().zip(&cfg.widths).enumerate() {
        for i in 0..count {
            let stride = if s > 0 && i == 0 { 2 } else { 1 };
            x = block(b, cfg, &format!("layer{}.{i}", s + 1), x, widths, stride)?;
        }
    }
    x = b.global_avg_pool("avgpool", x)?;
    x = b.op("flatten", Op::Flatten(Flatten), &[x])?;
    b.head(cfg.head.as_deref(), x, cfg.classes)?;
    Ok(())
}

/// The layout of a ResNet checkpoint: blocks counted per stage, widths from the weights.
fn detect(dict: &StateDict) -> Result<ResNetConfig> {
    let mut blocks = [0usize; 4];
    for (s, count) in blocks.iter_mut().enumerate() {
        while dict.contains(&format!("layer{}.{}.conv1.weight", s + 1, *count)) {
            *count += 1;
        }
        if *count == 0 {
            bail!("unrecognised ResNet layout: no blocks in layer{}", s + 1);
        }
    }
    let bottleneck = dict.contains("layer1.0.conv3.weight");
    let mut cfg = ResNetConfig::standard(if bottleneck { "resnet50" } else { "resnet18" }, 1000)
        .expect("standard ResNet names are known");
    cfg.blocks = blocks;
    Ok(cfg.with_widths_of(dict))
}
