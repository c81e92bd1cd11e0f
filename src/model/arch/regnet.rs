//! torchvision's RegNet X and Y: `stem` (conv 3x3/2, bn, relu), `trunk_output.blockS` stages of
//! `blockS-I` bottleneck blocks (`f.a` 1x1, `f.b` grouped 3x3 with the stage's stride on the
//! first block, `f.se` squeeze-and-excitation in the Y models, `f.c` 1x1 without activation;
//! `proj` a 1x1 conv with bn where the shape changes), `avgpool`, `flatten`, `fc`.
//!
//! Functional steps of a block's `forward`: the residual sum `blockS-I.add`, then its
//! `activation` module. Widths, groups and SE widths are read from the checkpoint.
//!
//! timm's RegNets are the same network under other names: `stem.conv/bn`, stages `sS.bI`
//! (both from 1) of `conv1`, `conv2`, `se`, `conv3` (each `ConvNormAct`: `.conv`, `.bn`,
//! `.bn.act`), `downsample`, the residual `add` and `act3`; `head.global_pool` and `head.fc`.

use anyhow::{bail, Result};

use super::blocks::{conv_norm_act, squeeze_excitation, timm_conv_norm_act, Act};
use super::builder::{Builder, ConvSpec};
use super::{conv_shape, read_head, rows, sized, Arch, Family, Layout, Naming};
use crate::model::graph::NodeId;
use crate::model::load::StateDict;
use crate::model::ops::{Add, Flatten, Function, Op};

/// One block: output width, bottleneck width, groups of the 3x3 conv, SE width, stride.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Block {
    pub out: usize,
    pub bottleneck: usize,
    pub groups: usize,
    pub squeeze: Option<usize>,
    pub stride: usize,
}

#[derive(Debug, Clone)]
pub struct RegNetConfig {
    pub variant: Option<&'static str>,
    pub stem: usize,
    pub stages: Vec<Vec<Block>>,
    pub classes: usize,
    /// The final linear layer (`fc`, the Linear of a fine-tuned Sequential there, or none in a
    /// backbone saved without it).
    pub head: Option<String>,
    pub naming: Naming,
}

/// Where a RegNet's modules are under each [`Naming`].
trait Names {
    /// Block `i` (from 0) of stage `s` (from 1).
    fn block(self, s: usize, i: usize) -> String;

    /// A block's 1x1 conv in, grouped 3x3, SE, 1x1 conv out, shortcut projection and final
    /// activation.
    fn parts(self) -> [&'static str; 6];

    /// A conv + batch norm (+ activation) module.
    fn conv_norm_act(
        self,
        b: &mut Builder,
        name: &str,
        x: NodeId,
        spec: ConvSpec,
        act: Option<Act>,
    ) -> Result<NodeId>;

    /// The weight of a conv + norm module's convolution.
    fn conv_weight(self, name: &str) -> String;

    /// The pooling, flatten and linear of the head.
    fn head(self) -> [&'static str; 3];

    /// The trunk's last stage, where CAMs are taken.
    fn trunk(self) -> &'static str;
}

impl Names for Naming {
    fn block(self, s: usize, i: usize) -> String {
        match self {
            Naming::Torchvision => format!("trunk_output.block{s}.block{s}-{i}"),
            Naming::Timm => format!("s{s}.b{}", i + 1),
        }
    }

    fn parts(self) -> [&'static str; 6] {
        match self {
            Naming::Torchvision => ["f.a", "f.b", "f.se", "f.c", "proj", "activation"],
            Naming::Timm => ["conv1", "conv2", "se", "conv3", "downsample", "act3"],
        }
    }

    fn conv_norm_act(
        self,
        b: &mut Builder,
        name: &str,
        x: NodeId,
        spec: ConvSpec,
        act: Option<Act>,
    ) -> Result<NodeId> {
        match self {
            Naming::Torchvision => conv_norm_act(b, name, x, spec, 1e-5, act),
            Naming::Timm => timm_conv_norm_act(b, name, x, spec, act),
        }
    }

    fn conv_weight(self, name: &str) -> String {
        match self {
            Naming::Torchvision => format!("{name}.0.weight"),
            Naming::Timm => format!("{name}.conv.weight"),
        }
    }

    fn head(self) -> [&'static str; 3] {
        match self {
            Naming::Torchvision => ["avgpool", "flatten", "fc"],
            Naming::Timm => ["head.global_pool", "head.flatten", "head.fc"],
        }
    }

    fn trunk(self) -> &'static str {
        match self {
            Naming::Torchvision => "trunk_output",
            Naming::Timm => "s4",
        }
    }
}

/// torchvision's variants: name, blocks per stage, width per stage, group width per stage, SE.
type Variant = (&'static str, [usize; 4], [usize; 4], [usize; 4], bool);

const VARIANTS: [Variant; 15] = [
    (
        "regnet_x_400mf",
        [1, 2, 7, 12],
        [32, 64, 160, 400],
        [16; 4],
        false,
    ),
    (
        "regnet_x_800mf",
        [1, 3, 7, 5],
        [64, 128, 288, 672],
        [16; 4],
        false,
    ),
    (
        "regnet_x_1_6gf",
        [2, 4, 10, 2],
        [72, 168, 408, 912],
        [24; 4],
        false,
    ),
    (
        "regnet_x_3_2gf",
        [2, 6, 15, 2],
        [96, 192, 432, 1008],
        [48; 4],
        false,
    ),
    (
        "regnet_x_8gf",
        [2, 5, 15, 1],
        [80, 240, 720, 1920],
        [80, 120, 120, 120],
        false,
    ),
    (
        "regnet_x_16gf",
        [2, 6, 13, 1],
        [256, 512, 896, 2048],
        [128; 4],
        false,
    ),
    (
        "regnet_x_32gf",
        [2, 7, 13, 1],
        [336, 672, 1344, 2520],
        [168; 4],
        false,
    ),
    (
        "regnet_y_400mf",
        [1, 3, 6, 6],
        [48, 104, 208, 440],
        [8; 4],
        true,
    ),
    (
        "regnet_y_800mf",
        [1, 3, 8, 2],
        [64, 144, 320, 784],
        [16; 4],
        true,
    ),
    (
        "regnet_y_1_6gf",
        [2, 6, 17, 2],
        [48, 120, 336, 888],
        [24; 4],
        true,
    ),
    (
        "regnet_y_3_2gf",
        [2, 5, 13, 1],
        [72, 216, 576, 1512],
        [24; 4],
        true,
    ),
    (
        "regnet_y_8gf",
        [2, 4, 10, 1],
        [224, 448, 896, 2016],
        [56; 4],
        true,
    ),
    (
        "regnet_y_16gf",
        [2, 4, 11, 1],
        [224, 448, 1232, 3024],
        [112; 4],
        true,
    ),
    (
        "regnet_y_32gf",
        [2, 5, 12, 1],
        [232, 696, 1392, 3712],
        [232; 4],
        true,
    ),
    (
        "regnet_y_128gf",
        [2, 7, 17, 1],
        [528, 1056, 2904, 7392],
        [264; 4],
        true,
    ),
];

pub const FAMILY: Family = Family {
    title: "torchvision/timm RegNet",
    names: &[
        "regnet_x_400mf",
        "regnet_x_800mf",
        "regnet_x_1_6gf",
        "regnet_x_3_2gf",
        "regnet_x_8gf",
        "regnet_x_16gf",
        "regnet_x_32gf",
        "regnet_y_400mf",
        "regnet_y_800mf",
        "regnet_y_1_6gf",
        "regnet_y_3_2gf",
        "regnet_y_8gf",
        "regnet_y_16gf",
        "regnet_y_32gf",
        "regnet_y_128gf",
    ],
    detect: |dict| {
        let torchvision = dict.contains("stem.0.weight")
            && dict.contains("trunk_output.block1.block1-0.f.a.0.weight");
        let timm = dict.contains("stem.conv.weight") && dict.contains("s1.b1.conv1.conv.weight");
        (torchvision || timm).then(|| Ok(Arch::new(RegNetConfig::empty().with_widths_of(dict))))
    },
    standard: |name, classes, dict| {
        let cfg = RegNetConfig::standard(name, classes)?;
        Some(sized(cfg, dict, RegNetConfig::with_widths_of))
    },
};

impl RegNetConfig {
    pub fn standard(name: &str, classes: usize) -> Option<RegNetConfig> {
        let &(variant, depths, widths, group_widths, se) = VARIANTS.iter().find(|v| v.0 == name)?;
        let stages = (0..4)
            .map(|s| {
                // A stage's first block takes the previous stage's width (the stem's: 32).
                let first_in = if s == 0 { 32 } else { widths[s - 1] };
                (0..depths[s])
                    .map(|i| {
                        let w_in = if i == 0 { first_in } else { widths[s] };
                        Block {
                            out: widths[s],
                            bottleneck: widths[s],
                            groups: widths[s] / group_widths[s],
                            squeeze: se.then(|| (0.25 * w_in as f64).round() as usize),
                            stride: if i == 0 { 2 } else { 1 },
                        }
                    })
                    .collect()
            })
            .collect();
        Some(RegNetConfig {
            variant: Some(variant),
            stem: 32,
            stages,
            classes,
            head: Some("fc".into()),
            naming: Naming::Torchvision,
        })
    }

    /// No stages yet: everything comes from a checkpoint.
    fn empty() -> RegNetConfig {
        RegNetConfig {
            variant: None,
            stem: 32,
            stages: vec![Vec::new(); 4],
            classes: 1000,
            head: Some("fc".into()),
            naming: Naming::Torchvision,
        }
    }

    /// The layout of `dict`: block counts, widths, groups and SE widths, and the variant with
    /// those block counts and widths, if any.
    pub fn with_widths_of(mut self, dict: &StateDict) -> RegNetConfig {
        let naming = Naming::of(dict, "stem.conv.weight");
        self.naming = naming;
        let [a, b, se, c, ..] = naming.parts();
        if let Some(n) = rows(dict, &naming.conv_weight("stem")) {
            self.stem = n;
        }
        for (s, stage) in self.stages.iter_mut().enumerate() {
            let block = |i: usize| naming.block(s + 1, i);
            let count = (0..)
                .take_while(|&i| dict.contains(&naming.conv_weight(&format!("{}.{a}", block(i)))))
                .count();
            *stage = (0..count)
                .map(|i| {
                    let p = block(i);
                    let grouped = naming.conv_weight(&format!("{p}.{b}"));
                    let (bottleneck, groups) = match conv_shape(dict, &grouped) {
                        Some([out, per_group, _, _]) if per_group > 0 => (out, out / per_group),
                        _ => (0, 1),
                    };
                    Block {
                        out: rows(dict, &naming.conv_weight(&format!("{p}.{c}"))).unwrap_or(0),
                        bottleneck,
                        groups,
                        squeeze: rows(dict, &format!("{p}.{se}.fc1.weight")),
                        stride: if i == 0 { 2 } else { 1 },
                    }
                })
                .collect();
        }
        self.head = Some(naming.head()[2].into());
        read_head(dict, naming.head()[2], &mut self.head, &mut self.classes);
        let depths: Vec<usize> = self.stages.iter().map(Vec::len).collect();
        let widths: Vec<usize> = self
            .stages
            .iter()
            .map(|s| s.first().map_or(0, |b| b.out))
            .collect();
        self.variant = VARIANTS
            .iter()
            .find(|v| v.1[..] == depths[..] && v.2[..] == widths[..])
            .map(|v| v.0);
        self
    }
}

fn block(b: &mut Builder, naming: Naming, name: &str, x: NodeId, block: &Block) -> Result<NodeId> {
    let p = |s: &str| format!("{name}.{s}");
    let [a, grouped, se, c, proj, activation] = naming.parts();
    let relu = Some(Act::Relu);
    let identity = if b.shape(x)[1] != block.out || block.stride != 1 {
        let spec = ConvSpec::new(block.out, 1, 0, false).stride(block.stride);
        naming.conv_norm_act(b, &p(proj), x, spec, None)?
    } else {
        x
    };
    let spec = ConvSpec::new(block.bottleneck, 1, 0, false);
    let mut y = naming.conv_norm_act(b, &p(a), x, spec, relu)?;
    let spec = ConvSpec::new(block.bottleneck, 3, 1, false)
        .stride(block.stride)
        .groups(block.groups);
    y = naming.conv_norm_act(b, &p(grouped), y, spec, relu)?;
    if let Some(squeeze) = block.squeeze {
        y = squeeze_excitation(b, &p(se), y, squeeze, Act::Relu, Function::Sigmoid)?;
    }
    let spec = ConvSpec::new(block.out, 1, 0, false);
    y = naming.conv_norm_act(b, &p(c), y, spec, None)?;
    let sum = b.op(&p("add"), Op::Add(Add), &[identity, y])?;
    b.relu(&p(activation), sum)
}

impl Layout for RegNetConfig {
    fn name(&self) -> String {
        let base = match self.variant {
            Some(v) => v.into(),
            None => format!(
                "regnet-like (blocks {:?})",
                self.stages.iter().map(Vec::len).collect::<Vec<_>>()
            ),
        };
        match self.naming {
            Naming::Torchvision => base,
            Naming::Timm => format!("{base} (timm)"),
        }
    }

    fn build(&self, b: &mut Builder) -> Result<()> {
        if self.stages.iter().any(Vec::is_empty) {
            bail!("unrecognised RegNet layout: a stage without blocks");
        }
        let mut x = b.last();
        let naming = self.naming;
        let stem = ConvSpec::new(self.stem, 3, 1, false).stride(2);
        x = naming.conv_norm_act(b, "stem", x, stem, Some(Act::Relu))?;
        for (s, stage) in self.stages.iter().enumerate() {
            for (i, blk) in stage.iter().enumerate() {
                x = block(b, naming, &naming.block(s + 1, i), x, blk)?;
            }
        }
        let [pool, flatten, _] = naming.head();
        x = b.global_avg_pool(pool, x)?;
        x = b.op(flatten, Op::Flatten(Flatten), &[x])?;
        b.head(self.head.as_deref(), x, self.classes)
    }

    /// `trunk_output` (timm: `s4`), the last stage.
    fn cam_layer(&self) -> Option<String> {
        Some(self.naming.trunk().into())
    }

    fn input_size(&self) -> Option<[usize; 2]> {
        None
    }
}
