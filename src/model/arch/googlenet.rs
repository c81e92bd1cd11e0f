//! torchvision's GoogLeNet: BasicConv2d layers `conv1..3` (conv without bias, bn with eps 0.001,
//! and a functional ReLU, here the node `convN.relu`), max pools with `ceil_mode`, Inception
//! modules `inception3a..5b` (four branches: `branch1` 1x1; `branch2.0` 1x1 and `branch2.1` 3x3;
//! `branch3.0` 1x1 and `branch3.1` 3x3, as torchvision builds it; `branch4.0` max pool 3/1 and
//! `branch4.1` 1x1; concatenated as `inceptionXY.cat`), `avgpool`, `flatten`, `dropout`, `fc`.
//! The auxiliary classifiers (`aux1`, `aux2`) only run in training: their weights are accepted
//! and not built. Inputs are taken as given (`transform_input` off, as for weights not from
//! torchvision's ImageNet training).

use anyhow::{bail, Result};

use super::builder::{Builder, ConvSpec};
use super::{read_head, rows, sized, Arch, Family, Layout};
use crate::model::graph::NodeId;
use crate::model::load::StateDict;
use crate::model::ops::{Concat, Dropout, Flatten, Op, Pool, PoolKind};

const EPS: f64 = 1e-3;

/// An Inception module's widths: 1x1, 3x3 reduce, 3x3, "5x5" reduce, "5x5", pool projection.
pub type Widths = [usize; 6];

#[derive(Debug, Clone)]
pub struct GoogLeNetConfig {
    /// conv1, conv2, conv3.
    pub stem: [usize; 3],
    pub modules: [Widths; 9],
    pub classes: usize,
    /// The final linear layer (`fc`, the Linear of a fine-tuned Sequential there, or none in a
    /// backbone saved without it).
    pub head: Option<String>,
}

const MODULES: [&str; 9] = [
    "inception3a",
    "inception3b",
    "inception4a",
    "inception4b",
    "inception4c",
    "inception4d",
    "inception4e",
    "inception5a",
    "inception5b",
];

/// The max pools between the Inception modules: after which module, name, kernel.
const POOLS: [(&str, &str, usize); 2] = [
    ("inception3b", "maxpool3", 3),
    ("inception4e", "maxpool4", 2),
];

pub const FAMILY: Family = Family {
    title: "torchvision GoogLeNet",
    names: &["googlenet"],
    detect: |dict| {
        (dict.contains("conv1.conv.weight") && dict.contains("inception3a.branch1.conv.weight"))
            .then(|| detect(dict).map(Arch::new))
    },
    standard: |name, classes, dict| {
        (name == "googlenet").then(|| {
            sized(
                GoogLeNetConfig::standard(classes),
                dict,
                GoogLeNetConfig::with_widths_of,
            )
        })
    },
};

impl GoogLeNetConfig {
    pub fn standard(classes: usize) -> GoogLeNetConfig {
        GoogLeNetConfig {
            stem: [64, 64, 192],
            modules: [
                [64, 96, 128, 16, 32, 32],
                [128, 128, 192, 32, 96, 64],
                [192, 96, 208, 16, 48, 64],
                [160, 112, 224, 24, 64, 64],
                [128, 128, 256, 24, 64, 64],
                [112, 144, 288, 32, 64, 64],
                [256, 160, 320, 32, 128, 128],
                [256, 160, 320, 32, 128, 128],
                [384, 192, 384, 48, 128, 128],
            ],
            classes,
            head: Some("fc".into()),
        }
    }

    /// The same layout with the widths and class count of `dict`.
    pub fn with_widths_of(mut self, dict: &StateDict) -> GoogLeNetConfig {
        let rows = |name: &str| rows(dict, name);
        for (w, name) in self.stem.iter_mut().zip(["conv1", "conv2", "conv3"]) {
            if let Some(n) = rows(&format!("{name}.conv.weight")) {
                *w = n;
            }
        }
        let branches = [
            "branch1",
            "branch2.0",
            "branch2.1",
            "branch3.0",
            "branch3.1",
            "branch4.1",
        ];
        for (widths, module) in self.modules.iter_mut().zip(MODULES) {
            for (w, branch) in widths.iter_mut().zip(branches) {
                if let Some(n) = rows(&format!("{module}.{branch}.conv.weight")) {
                    *w = n;
                }
            }
        }
        read_head(dict, "fc", &mut self.head, &mut self.classes);
        self
    }
}

fn detect(dict: &StateDict) -> Result<GoogLeNetConfig> {
    for module in MODULES {
        if !dict.contains(&format!("{module}.branch4.1.conv.weight")) {
            bail!("unrecognised GoogLeNet layout: no {module}");
        }
    }
    Ok(GoogLeNetConfig::standard(1000).with_widths_of(dict))
}

/// `BasicConv2d`: `{name}.conv` (no bias), `{name}.bn`, and the functional ReLU `{name}.relu`.
fn basic_conv(b: &mut Builder, name: &str, x: NodeId, spec: ConvSpec) -> Result<NodeId> {
    let y = b.conv(&format!("{name}.conv"), x, spec)?;
    let y = b.batch_norm(&format!("{name}.bn"), y, EPS)?;
    b.relu(&format!("{name}.relu"), y)
}

fn inception(b: &mut Builder, name: &str, x: NodeId, w: &Widths) -> Result<NodeId> {
    let p = |s: &str| format!("{name}.{s}");
    let b1 = basic_conv(b, &p("branch1"), x, ConvSpec::new(w[0], 1, 0, false))?;
    let b2 = basic_conv(b, &p("branch2.0"), x, ConvSpec::new(w[1], 1, 0, false))?;
    let b2 = basic_conv(b, &p("branch2.1"), b2, ConvSpec::new(w[2], 3, 1, false))?;
    let b3 = basic_conv(b, &p("branch3.0"), x, ConvSpec::new(w[3], 1, 0, false))?;
    let b3 = basic_conv(b, &p("branch3.1"), b3, ConvSpec::new(w[4], 3, 1, false))?;
    let b4 = b.pool(
        &p("branch4.0"),
        x,
        Pool::square(PoolKind::Max, 3, 1, 1, true),
    )?;
    let b4 = basic_conv(b, &p("branch4.1"), b4, ConvSpec::new(w[5], 1, 0, false))?;
    b.op(&p("cat"), Op::Concat(Concat), &[b1, b2, b3, b4])
}

impl Layout for GoogLeNetConfig {
    fn name(&self) -> String {
        "googlenet".into()
    }

    fn build(&self, b: &mut Builder) -> Result<()> {
        let pool = |k| Pool::square(PoolKind::Max, k, 2, 0, true);
        let mut x = b.last();
        x = basic_conv(
            b,
            "conv1",
            x,
            ConvSpec::new(self.stem[0], 7, 3, false).stride(2),
        )?;
        x = b.pool("maxpool1", x, pool(3))?;
        x = basic_conv(b, "conv2", x, ConvSpec::new(self.stem[1], 1, 0, false))?;
        x = basic_conv(b, "conv3", x, ConvSpec::new(self.stem[2], 3, 1, false))?;
        x = b.pool("maxpool2", x, pool(3))?;
        for (name, widths) in MODULES.iter().zip(&self.modules) {
            x = inception(b, name, x, widths)?;
            if let Some(&(_, pool_name, kernel)) = POOLS.iter().find(|p| p.0 == *name) {
                x = b.pool(pool_name, x, pool(kernel))?;
            }
        }
        x = b.global_avg_pool("avgpool", x)?;
        x = b.op("flatten", Op::Flatten(Flatten), &[x])?;
        x = b.op("dropout", Op::Dropout(Dropout), &[x])?;
        b.head(self.head.as_deref(), x, self.classes)?;
        Ok(())
    }

    /// The last Inception module.
    fn cam_layer(&self) -> Option<String> {
        Some("inception5b".into())
    }

    fn input_size(&self) -> Option<[usize; 2]> {
        None
    }
}
