//! torchvision's ConvNeXt tiny/small/base/large: `features.0` (conv 4x4/4 with bias, LayerNorm2d),
//! stages `features.1, 3, 5, 7` of CNBlocks, downsampling `features.2, 4, 6` (LayerNorm2d, conv
//! 2x2/2), `avgpool`, `classifier.0..2` (LayerNorm2d, flatten, linear). Layer norms use eps 1e-6.
//!
//! A CNBlock `features.S.I`: `block.0` a 7x7 depthwise conv, `block.1` a permute to channels-last,
//! `block.2` a layer norm, `block.3` a linear to 4x the width, `block.4` GELU, `block.5` a linear
//! back, `block.6` the permute back; then the functional steps `layer_scale` (times the block's
//! own per-channel parameter of that name), `stochastic_depth` (the identity at inference) and the
//! residual `add`. The engine keeps NCHW, so the permutes are identity nodes and the linears are
//! 1x1 convolutions with the same weights.

use anyhow::{bail, Result};

use super::builder::{Builder, ConvSpec};
use super::{rows, sized, Arch, Family, Layout};
use crate::model::graph::NodeId;
use crate::model::load::StateDict;
use crate::model::ops::{Add, ChannelScale, Dropout, Flatten, Function, Op, Permute};

const EPS: f64 = 1e-6;

#[derive(Debug, Clone)]
pub struct ConvNextConfig {
    pub variant: &'static str,
    /// Blocks per stage.
    pub depths: [usize; 4],
    /// Width per stage.
    pub dims: [usize; 4],
    pub classes: usize,
}

/// torchvision's variants: name, blocks per stage, first stage width (doubling per stage).
const VARIANTS: [(&str, [usize; 4], usize); 4] = [
    ("convnext_tiny", [3, 3, 9, 3], 96),
    ("convnext_small", [3, 3, 27, 3], 96),
    ("convnext_base", [3, 3, 27, 3], 128),
    ("convnext_large", [3, 3, 27, 3], 192),
];

pub const FAMILY: Family = Family {
    title: "torchvision ConvNeXt",
    names: &[
        "convnext_tiny",
        "convnext_small",
        "convnext_base",
        "convnext_large",
    ],
    detect: |dict| {
        (dict.contains("features.1.0.layer_scale") && dict.contains("classifier.2.weight"))
            .then(|| detect(dict).map(Arch::new))
    },
    standard: |name, classes, dict| {
        let cfg = ConvNextConfig::standard(name, classes)?;
        Some(sized(cfg, dict, ConvNextConfig::with_widths_of))
    },
};

impl ConvNextConfig {
    pub fn standard(name: &str, classes: usize) -> Option<ConvNextConfig> {
        let &(variant, depths, dim) = VARIANTS.iter().find(|v| v.0 == name)?;
        Some(ConvNextConfig {
            variant,
            depths,
            dims: [dim, 2 * dim, 4 * dim, 8 * dim],
            classes,
        })
    }

    /// The same layout with the block counts, widths and class count of `dict`.
    pub fn with_widths_of(mut self, dict: &StateDict) -> ConvNextConfig {
        for s in 0..4 {
            let stage = 2 * s + 1;
            let count = (0..)
                .take_while(|i| dict.contains(&format!("features.{stage}.{i}.layer_scale")))
                .count();
            if count > 0 {
                self.depths[s] = count;
            }
            if let Some(n) = rows(dict, &format!("features.{stage}.0.block.0.weight")) {
                self.dims[s] = n;
            }
        }
        if let Some(n) = rows(dict, "classifier.2.weight") {
            self.classes = n;
        }
        self
    }
}

/// The variant with the checkpoint's block counts and first width (else the same block counts).
fn detect(dict: &StateDict) -> Result<ConvNextConfig> {
    let found = ConvNextConfig::standard("convnext_tiny", 1000)
        .expect("a known variant")
        .with_widths_of(dict);
    let exact = VARIANTS
        .iter()
        .find(|v| v.1 == found.depths && v.2 == found.dims[0])
        .or_else(|| VARIANTS.iter().find(|v| v.1 == found.depths));
    match exact {
        Some(v) => Ok(ConvNextConfig {
            variant: v.0,
            ..found
        }),
        None => bail!(
            "unrecognised ConvNeXt layout: blocks per stage {:?}",
            found.depths
        ),
    }
}

fn block(b: &mut Builder, name: &str, x: NodeId, dim: usize) -> Result<NodeId> {
    let p = |s: &str| format!("{name}.{s}");
    let depthwise = ConvSpec::new(dim, 7, 3, true).groups(dim);
    let mut y = b.conv(&p("block.0"), x, depthwise)?;
    y = b.op(&p("block.1"), Op::Permute(Permute), &[y])?;
    y = b.layer_norm(&p("block.2"), y, EPS)?;
    y = b.pointwise_linear(&p("block.3"), y, 4 * dim)?;
    y = b.activation(&p("block.4"), y, Function::Gelu)?;
    y = b.pointwise_linear(&p("block.5"), y, dim)?;
    y = b.op(&p("block.6"), Op::Permute(Permute), &[y])?;
    let scale = b
        .parameter(&p("layer_scale"), &[dim, 1, 1])?
        .reshape((1, dim, 1, 1))?;
    y = b.op(
        &p("layer_scale"),
        Op::ChannelScale(ChannelScale { scale }),
        &[y],
    )?;
    y = b.op(&p("stochastic_depth"), Op::Dropout(Dropout), &[y])?;
    b.op(&p("add"), Op::Add(Add), &[y, x])
}

impl Layout for ConvNextConfig {
    fn name(&self) -> String {
        self.variant.into()
    }

    fn build(&self, b: &mut Builder) -> Result<()> {
        let mut x = b.last();
        let stem = ConvSpec::new(self.dims[0], 4, 0, true).stride(4);
        x = b.conv("features.0.0", x, stem)?;
        x = b.layer_norm("features.0.1", x, EPS)?;
        for s in 0..4 {
            let stage = 2 * s + 1;
            for i in 0..self.depths[s] {
                x = block(b, &format!("features.{stage}.{i}"), x, self.dims[s])?;
            }
            if s < 3 {
                let down = format!("features.{}", stage + 1);
                x = b.layer_norm(&format!("{down}.0"), x, EPS)?;
                let conv = ConvSpec::new(self.dims[s + 1], 2, 0, true).stride(2);
                x = b.conv(&format!("{down}.1"), x, conv)?;
            }
        }
        x = b.global_avg_pool("avgpool", x)?;
        x = b.layer_norm("classifier.0", x, EPS)?;
        x = b.op("classifier.1", Op::Flatten(Flatten), &[x])?;
        b.classifier("classifier.2", x, self.classes)?;
        Ok(())
    }

    /// `features[-1]`, the last stage.
    fn cam_layer(&self) -> Option<String> {
        Some("features.7".into())
    }

    fn input_size(&self) -> Option<[usize; 2]> {
        None
    }
}
