//! torchvision's ResNet: stem `conv1, bn1, relu, maxpool`, four stages `layerS.B` of basic or
//! bottleneck blocks (stride on the 3x3 conv, `downsample.0/1` where the shape changes),
//! `avgpool` to 1x1 and `fc` (or the Linear of a fine-tuned `fc = Sequential(Dropout, Linear)`,
//! or no head at all in a backbone). ResNeXt is the same with a grouped 3x3 conv and wider blocks, Wide
//! ResNet with twice the inner width; both are read from the weights.
//!
//! timm's ResNets share these names and add two options, read from the weights too: a deep
//! stem of three 3x3 convolutions `conv1.0/.3/.6` (with `conv1.1/.4` batch norms) in place of
//! the 7x7, and `avg_down` shortcuts (`downsample.0` a 2x2 average pool, `downsample.1/2` the
//! 1x1 conv and its norm). timm's `resnetNd` has both, with a 32-wide stem.
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
    /// Channels out of the stem (64 in torchvision).
    pub stem: usize,
    /// The widths of a deep stem's first two 3x3 convolutions (timm's `deep` stem: 32, 32 in
    /// `resnetNd`); none for torchvision's one 7x7 convolution.
    pub deep_stem: Option<[usize; 2]>,
    /// Shortcuts that average-pool before a stride-1 1x1 conv (timm's `avg_down`).
    pub avg_down: bool,
    /// Per stage: the inner width of each block and its output width.
    pub widths: [(usize, usize); 4],
    /// Groups of the bottleneck's 3x3 conv (ResNeXt).
    pub groups: usize,
    pub classes: usize,
    /// The final linear layer: `fc`, `fc.1` in a fine-tuned `Sequential(Dropout, Linear)`, or
    /// none in a backbone saved without its head.
    pub head: Option<String>,
}

const DEPTHS: [(u32, [usize; 4], bool); 6] = [
    (18, [2, 2, 2, 2], false),
    (26, [2, 2, 2, 2], true),
    (34, [3, 4, 6, 3], false),
    (50, [3, 4, 6, 3], true),
    (101, [3, 4, 23, 3], true),
    (152, [3, 8, 36, 3], true),
];

pub const FAMILY: Family = Family {
    title: "torchvision/timm ResNet",
    names: &[
        "resnet18",
        "resnet18d",
        "resnet26",
        "resnet26d",
        "resnet34d",
        "resnet50d",
        "resnet101d",
        "resnet152d",
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
        (stem_conv(dict).is_some()
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
    /// `wide_resnetD_2`, as in torchvision; `resnet26` and the `d` variants as in timm.
    pub fn standard(name: &str, classes: usize) -> Option<ResNetConfig> {
        let timm_d = name.starts_with("resnet") && name.ends_with('d');
        let name = if timm_d {
            &name[..name.len() - 1]
        } else {
            name
        };
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
            deep_stem: timm_d.then_some([32, 32]),
            avg_down: timm_d,
            widths,
            groups,
            classes,
            head: Some("fc".into()),
        })
    }

    /// The same layout with the widths and class count found in `dict`.
    pub fn with_widths_of(mut self, dict: &StateDict) -> ResNetConfig {
        let rows = |name: &str| rows(dict, name);
        if let Some(n) = stem_conv(dict).and_then(&rows) {
            self.stem = n;
        }
        self.deep_stem = match (rows("conv1.0.weight"), rows("conv1.3.weight")) {
            (Some(a), Some(b)) => Some([a, b]),
            _ => None,
        };
        self.avg_down = dict
            .names()
            .any(|k| k.ends_with(".downsample.2.running_mean"));
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
                    match (self.deep_stem, self.avg_down) {
                        (None, false) => format!("resnet{d}"),
                        (Some([32, 32]), true) => format!("resnet{d}d"),
                        (Some(_), true) => format!("resnet{d} (deep stem, avg-down)"),
                        (Some(_), false) => format!("resnet{d} (deep stem)"),
                        (None, true) => format!("resnet{d} (avg-down)"),
                    }
                }
            })
            .unwrap_or_else(|| {
                let kind = if self.bottleneck {
                    "bottleneck"
                } else {
                    "basic"
                };
                let stem = if self.deep_stem.is_some() {
                    ", deep stem"
                } else {
                    ""
                };
                let down = if self.avg_down { ", avg-down" } else { "" };
                format!("resnet-like ({kind} blocks {:?}{stem}{down})", self.blocks)
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
    let identity = if (stride != 1 || cin != out) && cfg.avg_down {
        // timm's avg_down: the pool is an Identity at stride 1.
        let pooled = if stride == 1 {
            x
        } else {
            let pool = Pool::square(PoolKind::AvgExcludingPadding, 2, stride, 0, true);
            b.pool(&p("downsample.0"), x, pool)?
        };
        let d = b.conv(&p("downsample.1"), pooled, ConvSpec::new(out, 1, 0, false))?;
        b.batch_norm(&p("downsample.2"), d, 1e-5)?
    } else if stride != 1 || cin != out {
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
    x = match cfg.deep_stem {
        None => b.conv("conv1", x, ConvSpec::new(cfg.stem, 7, 3, false).stride(2))?,
        Some([first, second]) => {
            x = b.conv("conv1.0", x, ConvSpec::new(first, 3, 1, false).stride(2))?;
            x = b.batch_norm("conv1.1", x, 1e-5)?;
            x = b.relu("conv1.2", x)?;
            x = b.conv("conv1.3", x, ConvSpec::new(second, 3, 1, false))?;
            x = b.batch_norm("conv1.4", x, 1e-5)?;
            x = b.relu("conv1.5", x)?;
            b.conv("conv1.6", x, ConvSpec::new(cfg.stem, 3, 1, false))?
        }
    };
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

/// The stem convolution whose rows are the stem's width: torchvision's 7x7 `conv1`, or the
/// last of timm's deep stem.
fn stem_conv(dict: &StateDict) -> Option<&'static str> {
    ["conv1.weight", "conv1.6.weight"]
        .into_iter()
        .find(|name| dict.contains(name))
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
