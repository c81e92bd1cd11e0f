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
//!
//! timm's ConvNeXt is the same network under other names: `stem.0/1`, `stages.S.blocks.I` with
//! `conv_dw`, `norm`, `mlp.fc1`, `mlp.act`, `mlp.fc2` and the layer scale `gamma` (the permutes
//! are functional there, so they get no nodes), `stages.S.downsample.0/1` before stages 1-3, and
//! `head.global_pool`, `head.norm`, `head.flatten`, `head.fc`. Its small variants (atto to nano)
//! use 1x1 convolutions for the MLP (`conv_mlp`), read from the weights' rank.

use anyhow::{bail, Result};

use super::builder::{Builder, ConvSpec};
use super::{read_head, rows, sized, Arch, Family, Layout, Naming};
use crate::model::graph::NodeId;
use crate::model::load::StateDict;
use crate::model::ops::{Add, ChannelScale, Dropout, Flatten, Function, Op, Permute};

const EPS: f64 = 1e-6;

#[derive(Debug, Clone)]
pub struct ConvNextConfig {
    /// The variant's name, where the block counts and widths are one's.
    pub variant: Option<&'static str>,
    /// Blocks per stage.
    pub depths: [usize; 4],
    /// Width per stage.
    pub dims: [usize; 4],
    pub classes: usize,
    pub naming: Naming,
    /// The MLP as 1x1 convolutions (timm's `conv_mlp`) instead of channels-last linears.
    pub conv_mlp: bool,
    /// The final linear layer (`classifier.2`, `head.fc`), none in a backbone saved without it.
    pub head: Option<String>,
}

/// A block's parts under its module path: the depthwise conv, the permutes to and from
/// channels-last (`None` where they are functional and have no name), the layer norm, the MLP's
/// two linears and GELU, and the layer scale.
struct BlockParts {
    depthwise: &'static str,
    permute_in: Option<&'static str>,
    norm: &'static str,
    fc1: &'static str,
    act: &'static str,
    fc2: &'static str,
    permute_out: Option<&'static str>,
    scale: &'static str,
}

/// Where a ConvNeXt's modules are under each [`Naming`].
trait Names {
    /// The stem's convolution and layer norm.
    fn stem(self) -> [&'static str; 2];

    /// Stage `s` (0-3), the module pytorch-grad-cam's `features[-1]` is for the last.
    fn stage(self, s: usize) -> String;

    fn block(self, s: usize, i: usize) -> String;

    /// The layer norm and 2x2 convolution that lead into stage `s` (1-3).
    fn downsample(self, s: usize) -> String;

    /// The names of a block's parts.
    fn parts(self) -> BlockParts;

    /// Stochastic depth, the identity at inference.
    fn drop_path(self) -> &'static str;

    /// The head: pooling, layer norm, flatten, linear.
    fn head(self) -> [&'static str; 4];
}

impl Names for Naming {
    fn stem(self) -> [&'static str; 2] {
        match self {
            Naming::Torchvision => ["features.0.0", "features.0.1"],
            Naming::Timm => ["stem.0", "stem.1"],
        }
    }

    fn stage(self, s: usize) -> String {
        match self {
            Naming::Torchvision => format!("features.{}", 2 * s + 1),
            Naming::Timm => format!("stages.{s}"),
        }
    }

    fn block(self, s: usize, i: usize) -> String {
        match self {
            Naming::Torchvision => format!("{}.{i}", self.stage(s)),
            Naming::Timm => format!("stages.{s}.blocks.{i}"),
        }
    }

    fn downsample(self, s: usize) -> String {
        match self {
            Naming::Torchvision => format!("features.{}", 2 * s),
            Naming::Timm => format!("stages.{s}.downsample"),
        }
    }

    fn parts(self) -> BlockParts {
        match self {
            Naming::Torchvision => BlockParts {
                depthwise: "block.0",
                permute_in: Some("block.1"),
                norm: "block.2",
                fc1: "block.3",
                act: "block.4",
                fc2: "block.5",
                permute_out: Some("block.6"),
                scale: "layer_scale",
            },
            Naming::Timm => BlockParts {
                depthwise: "conv_dw",
                permute_in: None,
                norm: "norm",
                fc1: "mlp.fc1",
                act: "mlp.act",
                fc2: "mlp.fc2",
                permute_out: None,
                scale: "gamma",
            },
        }
    }

    fn drop_path(self) -> &'static str {
        match self {
            Naming::Torchvision => "stochastic_depth",
            Naming::Timm => "drop_path",
        }
    }

    fn head(self) -> [&'static str; 4] {
        match self {
            Naming::Torchvision => ["avgpool", "classifier.0", "classifier.1", "classifier.2"],
            Naming::Timm => ["head.global_pool", "head.norm", "head.flatten", "head.fc"],
        }
    }
}

/// torchvision's variants: name, blocks per stage, first stage width (doubling per stage).
const VARIANTS: [(&str, [usize; 4], usize); 4] = [
    ("convnext_tiny", [3, 3, 9, 3], 96),
    ("convnext_small", [3, 3, 27, 3], 96),
    ("convnext_base", [3, 3, 27, 3], 128),
    ("convnext_large", [3, 3, 27, 3], 192),
];

pub const FAMILY: Family = Family {
    title: "torchvision/timm ConvNeXt",
    names: &[
        "convnext_tiny",
        "convnext_small",
        "convnext_base",
        "convnext_large",
    ],
    detect: |dict| {
        let torchvision = dict.contains("features.1.0.layer_scale");
        let timm =
            dict.contains("stem.0.weight") && dict.contains("stages.0.blocks.0.conv_dw.weight");
        (torchvision || timm).then(|| detect(dict).map(Arch::new))
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
            variant: Some(variant),
            depths,
            dims: [dim, 2 * dim, 4 * dim, 8 * dim],
            classes,
            naming: Naming::Torchvision,
            conv_mlp: false,
            head: Some(Naming::Torchvision.head()[3].into()),
        })
    }

    /// The same layout with the names, block counts, widths and head of `dict`.
    pub fn with_widths_of(mut self, dict: &StateDict) -> ConvNextConfig {
        self.naming = Naming::of(dict, "stem.0.weight");
        let naming = self.naming;
        let dw = naming.parts().depthwise;
        for s in 0..4 {
            let count = (0..)
                .take_while(|&i| dict.contains(&format!("{}.{dw}.weight", naming.block(s, i))))
                .count();
            if count > 0 {
                self.depths[s] = count;
            }
            if let Some(n) = rows(dict, &format!("{}.{dw}.weight", naming.block(s, 0))) {
                self.dims[s] = n;
            }
        }
        let fc1 = format!("{}.{}.weight", naming.block(0, 0), naming.parts().fc1);
        self.conv_mlp = dict.shape(&fc1).is_some_and(|s| s.len() == 4);
        self.head = Some(naming.head()[3].into());
        read_head(dict, naming.head()[3], &mut self.head, &mut self.classes);
        self
    }
}

/// The variant with the checkpoint's block counts and first width (else the same block counts),
/// or none of them.
fn detect(dict: &StateDict) -> Result<ConvNextConfig> {
    let found = ConvNextConfig::standard("convnext_tiny", 1000)
        .expect("a known variant")
        .with_widths_of(dict);
    if found.depths.contains(&0) || found.dims.contains(&0) {
        bail!(
            "unrecognised ConvNeXt layout: blocks per stage {:?}",
            found.depths
        );
    }
    let exact = VARIANTS
        .iter()
        .find(|v| v.1 == found.depths && v.2 == found.dims[0])
        .or_else(|| VARIANTS.iter().find(|v| v.1 == found.depths));
    Ok(ConvNextConfig {
        variant: exact.map(|v| v.0),
        ..found
    })
}

fn block(
    b: &mut Builder,
    cfg: &ConvNextConfig,
    name: &str,
    x: NodeId,
    dim: usize,
) -> Result<NodeId> {
    let p = |s: &str| format!("{name}.{s}");
    let parts = cfg.naming.parts();
    let depthwise = ConvSpec::new(dim, 7, 3, true).groups(dim);
    let mut y = b.conv(&p(parts.depthwise), x, depthwise)?;
    if let Some(permute) = parts.permute_in {
        y = b.op(&p(permute), Op::Permute(Permute), &[y])?;
    }
    y = b.layer_norm(&p(parts.norm), y, EPS)?;
    y = match cfg.conv_mlp {
        true => b.conv(&p(parts.fc1), y, ConvSpec::new(4 * dim, 1, 0, true))?,
        false => b.pointwise_linear(&p(parts.fc1), y, 4 * dim)?,
    };
    y = b.activation(&p(parts.act), y, Function::Gelu)?;
    y = match cfg.conv_mlp {
        true => b.conv(&p(parts.fc2), y, ConvSpec::new(dim, 1, 0, true))?,
        false => b.pointwise_linear(&p(parts.fc2), y, dim)?,
    };
    if let Some(permute) = parts.permute_out {
        y = b.op(&p(permute), Op::Permute(Permute), &[y])?;
    }
    let scale_name = p(parts.scale);
    let scale = match cfg.naming {
        Naming::Torchvision => b.parameter(&scale_name, &[dim, 1, 1])?,
        Naming::Timm => b.parameter(&scale_name, &[dim])?,
    }
    .reshape((1, dim, 1, 1))?;
    y = b.op(&scale_name, Op::ChannelScale(ChannelScale { scale }), &[y])?;
    y = b.op(&p(cfg.naming.drop_path()), Op::Dropout(Dropout), &[y])?;
    b.op(&p("add"), Op::Add(Add), &[y, x])
}

impl Layout for ConvNextConfig {
    fn name(&self) -> String {
        let base = match self.variant {
            Some(v) => v.to_string(),
            None => format!(
                "convnext-like (blocks {:?}, widths {:?})",
                self.depths, self.dims
            ),
        };
        match self.naming {
            Naming::Torchvision => base,
            Naming::Timm => format!("{base} (timm)"),
        }
    }

    fn build(&self, b: &mut Builder) -> Result<()> {
        let naming = self.naming;
        let mut x = b.last();
        let [stem_conv, stem_norm] = naming.stem();
        let stem = ConvSpec::new(self.dims[0], 4, 0, true).stride(4);
        x = b.conv(stem_conv, x, stem)?;
        x = b.layer_norm(stem_norm, x, EPS)?;
        for s in 0..4 {
            if s > 0 {
                let down = naming.downsample(s);
                x = b.layer_norm(&format!("{down}.0"), x, EPS)?;
                let conv = ConvSpec::new(self.dims[s], 2, 0, true).stride(2);
                x = b.conv(&format!("{down}.1"), x, conv)?;
            }
            for i in 0..self.depths[s] {
                x = block(b, self, &naming.block(s, i), x, self.dims[s])?;
            }
        }
        let [pool, norm, flatten, _] = naming.head();
        x = b.global_avg_pool(pool, x)?;
        x = b.layer_norm(norm, x, EPS)?;
        x = b.op(flatten, Op::Flatten(Flatten), &[x])?;
        b.head(self.head.as_deref(), x, self.classes)
    }

    /// `features[-1]` (timm: `stages[-1]`), the last stage.
    fn cam_layer(&self) -> Option<String> {
        Some(self.naming.stage(3))
    }

    fn input_size(&self) -> Option<[usize; 2]> {
        None
    }
}
