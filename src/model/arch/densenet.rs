//! torchvision's DenseNet 121/161/169/201: `features.conv0/norm0/relu0/pool0`, dense blocks
//! `features.denseblockB` of layers `denselayerL` (`norm1, relu1, conv1` 1x1, `norm2, relu2,
//! conv2` 3x3), transitions `features.transitionB` (`norm, relu, conv` 1x1, `pool` avg 2/2),
//! `features.norm5`, then functional steps and `classifier`.
//!
//! Functional steps in PyTorch's `forward`, as nodes: a dense layer concatenates everything
//! before it (`denselayerL.cat`, from the second layer on), a dense block concatenates its input
//! and every layer's output (`denseblockB.cat`), and the network ends with `relu`,
//! `adaptive_avg_pool2d` and `flatten`. A dense block's name stands for its concatenation.

use anyhow::{bail, Result};

use super::builder::{Builder, ConvSpec};
use super::{read_head, rows, sized, Arch, Family, Layout};
use crate::model::graph::NodeId;
use crate::model::load::StateDict;
use crate::model::ops::{Concat, Flatten, Op, Pool, PoolKind};

#[derive(Debug, Clone)]
pub struct DenseNetConfig {
    pub depth: usize,
    pub init: usize,
    pub growth: usize,
    /// Width of each layer's bottleneck (`bn_size * growth`, 4x in torchvision).
    pub bottleneck: usize,
    pub blocks: [usize; 4],
    /// Output width of each transition (half its input in torchvision).
    pub transitions: [usize; 3],
    pub classes: usize,
    /// The final linear layer (`classifier`, the Linear of a fine-tuned Sequential there, or none in a
    /// backbone saved without it).
    pub head: Option<String>,
}

/// torchvision's variants: depth, layers per block, growth, initial width.
const VARIANTS: [(usize, [usize; 4], usize, usize); 4] = [
    (121, [6, 12, 24, 16], 32, 64),
    (161, [6, 12, 36, 24], 48, 96),
    (169, [6, 12, 32, 32], 32, 64),
    (201, [6, 12, 48, 32], 32, 64),
];

pub const FAMILY: Family = Family {
    title: "torchvision DenseNet",
    names: &["densenet121", "densenet161", "densenet169", "densenet201"],
    detect: |dict| {
        (dict.contains("features.conv0.weight")
            && dict.contains("features.denseblock1.denselayer1.conv1.weight"))
        .then(|| detect(dict).map(Arch::new))
    },
    standard: |name, classes, dict| {
        let depth: usize = name.strip_prefix("densenet")?.parse().ok()?;
        let cfg = DenseNetConfig::standard(depth, classes)?;
        Some(sized(cfg, dict, DenseNetConfig::with_widths_of))
    },
};

impl DenseNetConfig {
    pub fn standard(depth: usize, classes: usize) -> Option<DenseNetConfig> {
        let &(depth, blocks, growth, init) = VARIANTS.iter().find(|v| v.0 == depth)?;
        let mut transitions = [0; 3];
        let mut width = init;
        for (b, t) in transitions.iter_mut().enumerate() {
            width += blocks[b] * growth;
            *t = width / 2;
            width /= 2;
        }
        Some(DenseNetConfig {
            depth,
            init,
            growth,
            bottleneck: 4 * growth,
            blocks,
            transitions,
            classes,
            head: Some("classifier".into()),
        })
    }

    /// The same layout with the widths and class count of `dict`.
    pub fn with_widths_of(mut self, dict: &StateDict) -> DenseNetConfig {
        let rows = |name: &str| rows(dict, name);
        let layer = "features.denseblock1.denselayer1";
        if let Some(n) = rows("features.conv0.weight") {
            self.init = n;
        }
        if let Some(n) = rows(&format!("{layer}.conv2.weight")) {
            self.growth = n;
        }
        if let Some(n) = rows(&format!("{layer}.conv1.weight")) {
            self.bottleneck = n;
        }
        for (b, t) in self.transitions.iter_mut().enumerate() {
            if let Some(n) = rows(&format!("features.transition{}.conv.weight", b + 1)) {
                *t = n;
            }
        }
        read_head(dict, "classifier", &mut self.head, &mut self.classes);
        self
    }
}

/// The variant with the checkpoint's layers per block.
fn detect(dict: &StateDict) -> Result<DenseNetConfig> {
    let mut blocks = [0; 4];
    for (b, count) in blocks.iter_mut().enumerate() {
        *count = (1..)
            .take_while(|l| {
                dict.contains(&format!(
                    "features.denseblock{}.denselayer{l}.conv1.weight",
                    b + 1
                ))
            })
            .count();
    }
    match VARIANTS.iter().find(|v| v.1 == blocks) {
        Some(v) => Ok(DenseNetConfig::standard(v.0, 1000)
            .expect("a known variant")
            .with_widths_of(dict)),
        None => bail!("unrecognised DenseNet layout: layers per block {blocks:?}"),
    }
}

fn dense_block(
    b: &mut Builder,
    cfg: &DenseNetConfig,
    name: &str,
    x: NodeId,
    layers: usize,
) -> Result<NodeId> {
    let mut features = vec![x];
    for l in 1..=layers {
        let p = |s: &str| format!("{name}.denselayer{l}.{s}");
        let input = if features.len() == 1 {
            x
        } else {
            b.op(&p("cat"), Op::Concat(Concat), &features)?
        };
        let mut y = b.batch_norm(&p("norm1"), input, 1e-5)?;
        y = b.relu(&p("relu1"), y)?;
        y = b.conv(&p("conv1"), y, ConvSpec::new(cfg.bottleneck, 1, 0, false))?;
        y = b.batch_norm(&p("norm2"), y, 1e-5)?;
        y = b.relu(&p("relu2"), y)?;
        y = b.conv(&p("conv2"), y, ConvSpec::new(cfg.growth, 3, 1, false))?;
        features.push(y);
    }
    b.op(&format!("{name}.cat"), Op::Concat(Concat), &features)
}

impl Layout for DenseNetConfig {
    fn name(&self) -> String {
        format!("densenet{}", self.depth)
    }

    fn build(&self, b: &mut Builder) -> Result<()> {
        let mut x = b.last();
        x = b.conv(
            "features.conv0",
            x,
            ConvSpec::new(self.init, 7, 3, false).stride(2),
        )?;
        x = b.batch_norm("features.norm0", x, 1e-5)?;
        x = b.relu("features.relu0", x)?;
        x = b.pool(
            "features.pool0",
            x,
            Pool::square(PoolKind::Max, 3, 2, 1, false),
        )?;
        for (i, &layers) in self.blocks.iter().enumerate() {
            x = dense_block(b, self, &format!("features.denseblock{}", i + 1), x, layers)?;
            if let Some(&out) = self.transitions.get(i) {
                let p = |s: &str| format!("features.transition{}.{s}", i + 1);
                x = b.batch_norm(&p("norm"), x, 1e-5)?;
                x = b.relu(&p("relu"), x)?;
                x = b.conv(&p("conv"), x, ConvSpec::new(out, 1, 0, false))?;
                x = b.pool(&p("pool"), x, Pool::square(PoolKind::Avg, 2, 2, 0, false))?;
            }
        }
        x = b.batch_norm("features.norm5", x, 1e-5)?;
        x = b.relu("relu", x)?;
        x = b.global_avg_pool("adaptive_avg_pool2d", x)?;
        x = b.op("flatten", Op::Flatten(Flatten), &[x])?;
        b.head(self.head.as_deref(), x, self.classes)?;
        Ok(())
    }

    /// pytorch-grad-cam's `features[-1]` (`features.norm5`) as it really computes it: the ReLU
    /// that `DenseNet.forward` applies in place to that output rewrites the activations it keeps,
    /// so its maps are those of the ReLU after `norm5` (named `relu` here).
    fn cam_layer(&self) -> Option<String> {
        Some("relu".into())
    }

    fn input_size(&self) -> Option<[usize; 2]> {
        None
    }
}
