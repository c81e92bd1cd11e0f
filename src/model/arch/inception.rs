//! torchvision's Inception v3 (299x299 input): BasicConv2d layers (conv without bias, bn with
//! eps 0.001, the functional ReLU as `{name}.relu`) `Conv2d_1a_3x3 .. Conv2d_4a_3x3` with max
//! pools, Inception modules `Mixed_5b .. Mixed_7c` (kinds A to E, with 1x7/7x1 and 1x3/3x1
//! convolutions), `avgpool`, `dropout`, `flatten`, `fc`. The auxiliary classifier (`AuxLogits`)
//! only runs in training: its weights are accepted and not built. Inputs are taken as given
//! (`transform_input` off).
//!
//! Functional steps of the modules' `forward`, as nodes under the module: the pooling branch's
//! `avg_pool2d` or `max_pool2d`, module E's inner concatenations `cat_3x3` and `cat_3x3dbl`, and
//! each module's output `cat`.

use anyhow::{bail, Result};

use super::builder::{Builder, ConvSpec};
use super::{read_head, rows, sized, Arch, Family, Layout};
use crate::model::graph::NodeId;
use crate::model::load::StateDict;
use crate::model::ops::{Concat, Dropout, Flatten, Op, Pool, PoolKind};

const EPS: f64 = 1e-3;

/// torchvision's `InceptionA` .. `InceptionE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    A,
    B,
    C,
    D,
    E,
}

/// The modules in order, with their kind.
const MODULES: [(&str, Kind); 11] = [
    ("Mixed_5b", Kind::A),
    ("Mixed_5c", Kind::A),
    ("Mixed_5d", Kind::A),
    ("Mixed_6a", Kind::B),
    ("Mixed_6b", Kind::C),
    ("Mixed_6c", Kind::C),
    ("Mixed_6d", Kind::C),
    ("Mixed_6e", Kind::C),
    ("Mixed_7a", Kind::D),
    ("Mixed_7b", Kind::E),
    ("Mixed_7c", Kind::E),
];

/// The stem's BasicConv2d layers: name, kernel, stride, padding, and the max pool after it.
const STEM: [(&str, usize, usize, usize, Option<&str>); 5] = [
    ("Conv2d_1a_3x3", 3, 2, 0, None),
    ("Conv2d_2a_3x3", 3, 1, 0, None),
    ("Conv2d_2b_3x3", 3, 1, 1, Some("maxpool1")),
    ("Conv2d_3b_1x1", 1, 1, 0, None),
    ("Conv2d_4a_3x3", 3, 1, 0, Some("maxpool2")),
];

/// Every convolution's output width, read from the checkpoint by its BasicConv2d name (widths
/// are torchvision's unless a checkpoint says otherwise).
#[derive(Debug, Clone)]
pub struct InceptionConfig {
    pub widths: std::collections::BTreeMap<String, usize>,
    pub classes: usize,
    /// The final linear layer (`fc`, the Linear of a fine-tuned Sequential there, or none in a
    /// backbone saved without it).
    pub head: Option<String>,
}

pub const FAMILY: Family = Family {
    title: "torchvision Inception v3",
    names: &["inception_v3"],
    detect: |dict| {
        (dict.contains("Conv2d_1a_3x3.conv.weight")
            && dict.contains("Mixed_7c.branch1x1.conv.weight"))
        .then(|| detect(dict).map(Arch::new))
    },
    standard: |name, classes, dict| {
        (name == "inception_v3").then(|| {
            sized(
                InceptionConfig::standard(classes),
                dict,
                InceptionConfig::with_widths_of,
            )
        })
    },
};

/// torchvision's widths: each BasicConv2d under its full name.
fn standard_widths() -> Vec<(String, usize)> {
    let mut w: Vec<(String, usize)> = STEM
        .iter()
        .zip([32, 32, 64, 80, 192])
        .map(|((n, ..), c)| (n.to_string(), c))
        .collect();
    let mut add = |module: &str, convs: &[(&str, usize)]| {
        for (conv, c) in convs {
            w.push((format!("{module}.{conv}"), *c));
        }
    };
    for (module, pool) in [("Mixed_5b", 32), ("Mixed_5c", 64), ("Mixed_5d", 64)] {
        add(
            module,
            &[
                ("branch1x1", 64),
                ("branch5x5_1", 48),
                ("branch5x5_2", 64),
                ("branch3x3dbl_1", 64),
                ("branch3x3dbl_2", 96),
                ("branch3x3dbl_3", 96),
                ("branch_pool", pool),
            ],
        );
    }
    add(
        "Mixed_6a",
        &[
            ("branch3x3", 384),
            ("branch3x3dbl_1", 64),
            ("branch3x3dbl_2", 96),
            ("branch3x3dbl_3", 96),
        ],
    );
    for (module, c7) in [
        ("Mixed_6b", 128),
        ("Mixed_6c", 160),
        ("Mixed_6d", 160),
        ("Mixed_6e", 192),
    ] {
        add(
            module,
            &[
                ("branch1x1", 192),
                ("branch7x7_1", c7),
                ("branch7x7_2", c7),
                ("branch7x7_3", 192),
                ("branch7x7dbl_1", c7),
                ("branch7x7dbl_2", c7),
                ("branch7x7dbl_3", c7),
                ("branch7x7dbl_4", c7),
                ("branch7x7dbl_5", 192),
                ("branch_pool", 192),
            ],
        );
    }
    add(
        "Mixed_7a",
        &[
            ("branch3x3_1", 192),
            ("branch3x3_2", 320),
            ("branch7x7x3_1", 192),
            ("branch7x7x3_2", 192),
            ("branch7x7x3_3", 192),
            ("branch7x7x3_4", 192),
        ],
    );
    for module in ["Mixed_7b", "Mixed_7c"] {
        add(
            module,
            &[
                ("branch1x1", 320),
                ("branch3x3_1", 384),
                ("branch3x3_2a", 384),
                ("branch3x3_2b", 384),
                ("branch3x3dbl_1", 448),
                ("branch3x3dbl_2", 384),
                ("branch3x3dbl_3a", 384),
                ("branch3x3dbl_3b", 384),
                ("branch_pool", 192),
            ],
        );
    }
    w
}

impl InceptionConfig {
    pub fn standard(classes: usize) -> InceptionConfig {
        InceptionConfig {
            widths: standard_widths().into_iter().collect(),
            classes,
            head: Some("fc".into()),
        }
    }

    /// The same layout with the widths and class count of `dict`.
    pub fn with_widths_of(mut self, dict: &StateDict) -> InceptionConfig {
        for (name, w) in self.widths.iter_mut() {
            if let Some(n) = rows(dict, &format!("{name}.conv.weight")) {
                *w = n;
            }
        }
        read_head(dict, "fc", &mut self.head, &mut self.classes);
        self
    }
}

fn detect(dict: &StateDict) -> Result<InceptionConfig> {
    for (module, _) in MODULES {
        if !dict.contains(&format!("{module}.branch3x3dbl_1.conv.weight"))
            && !dict.contains(&format!("{module}.branch7x7dbl_1.conv.weight"))
            && !dict.contains(&format!("{module}.branch7x7x3_1.conv.weight"))
        {
            bail!("unrecognised Inception v3 layout: no {module}");
        }
    }
    Ok(InceptionConfig::standard(1000).with_widths_of(dict))
}

/// Adds the module's convolutions by their BasicConv2d names.
struct Module<'a, 'b> {
    b: &'a mut Builder<'b>,
    cfg: &'a InceptionConfig,
    name: &'a str,
}

impl Module<'_, '_> {
    /// BasicConv2d `{module}.{conv}`: conv `kh`x`kw` with stride and padding per axis, bn, relu.
    fn conv(
        &mut self,
        conv: &str,
        x: NodeId,
        k: (usize, usize),
        stride: usize,
        pad: (usize, usize),
    ) -> Result<NodeId> {
        let full = format!("{}.{conv}", self.name);
        basic_conv(self.b, self.cfg, &full, x, k, stride, pad)
    }

    fn node(&self, step: &str) -> String {
        format!("{}.{step}", self.name)
    }
}

fn basic_conv(
    b: &mut Builder,
    cfg: &InceptionConfig,
    name: &str,
    x: NodeId,
    k: (usize, usize),
    stride: usize,
    pad: (usize, usize),
) -> Result<NodeId> {
    let out = *cfg
        .widths
        .get(name)
        .ok_or_else(|| anyhow::anyhow!("no width for {name}"))?;
    let spec = ConvSpec::rect(out, k, pad, false).stride(stride);
    let y = b.conv(&format!("{name}.conv"), x, spec)?;
    let y = b.batch_norm(&format!("{name}.bn"), y, EPS)?;
    b.relu(&format!("{name}.relu"), y)
}

fn module(
    b: &mut Builder,
    cfg: &InceptionConfig,
    name: &str,
    kind: Kind,
    x: NodeId,
) -> Result<NodeId> {
    let mut m = Module { b, cfg, name };
    let avg = Pool::square(PoolKind::Avg, 3, 1, 1, false);
    let max = Pool::square(PoolKind::Max, 3, 2, 0, false);
    let outputs = match kind {
        Kind::A => {
            let b1 = m.conv("branch1x1", x, (1, 1), 1, (0, 0))?;
            let b5 = m.conv("branch5x5_1", x, (1, 1), 1, (0, 0))?;
            let b5 = m.conv("branch5x5_2", b5, (5, 5), 1, (2, 2))?;
            let d = m.conv("branch3x3dbl_1", x, (1, 1), 1, (0, 0))?;
            let d = m.conv("branch3x3dbl_2", d, (3, 3), 1, (1, 1))?;
            let d = m.conv("branch3x3dbl_3", d, (3, 3), 1, (1, 1))?;
            let p = m.b.pool(&m.node("avg_pool2d"), x, avg)?;
            let p = m.conv("branch_pool", p, (1, 1), 1, (0, 0))?;
            vec![b1, b5, d, p]
        }
        Kind::B => {
            let b3 = m.conv("branch3x3", x, (3, 3), 2, (0, 0))?;
            let d = m.conv("branch3x3dbl_1", x, (1, 1), 1, (0, 0))?;
            let d = m.conv("branch3x3dbl_2", d, (3, 3), 1, (1, 1))?;
            let d = m.conv("branch3x3dbl_3", d, (3, 3), 2, (0, 0))?;
            let p = m.b.pool(&m.node("max_pool2d"), x, max)?;
            vec![b3, d, p]
        }
        Kind::C => {
            let b1 = m.conv("branch1x1", x, (1, 1), 1, (0, 0))?;
            let s = m.conv("branch7x7_1", x, (1, 1), 1, (0, 0))?;
            let s = m.conv("branch7x7_2", s, (1, 7), 1, (0, 3))?;
            let s = m.conv("branch7x7_3", s, (7, 1), 1, (3, 0))?;
            let d = m.conv("branch7x7dbl_1", x, (1, 1), 1, (0, 0))?;
            let d = m.conv("branch7x7dbl_2", d, (7, 1), 1, (3, 0))?;
            let d = m.conv("branch7x7dbl_3", d, (1, 7), 1, (0, 3))?;
            let d = m.conv("branch7x7dbl_4", d, (7, 1), 1, (3, 0))?;
            let d = m.conv("branch7x7dbl_5", d, (1, 7), 1, (0, 3))?;
            let p = m.b.pool(&m.node("avg_pool2d"), x, avg)?;
            let p = m.conv("branch_pool", p, (1, 1), 1, (0, 0))?;
            vec![b1, s, d, p]
        }
        Kind::D => {
            let b3 = m.conv("branch3x3_1", x, (1, 1), 1, (0, 0))?;
            let b3 = m.conv("branch3x3_2", b3, (3, 3), 2, (0, 0))?;
            let s = m.conv("branch7x7x3_1", x, (1, 1), 1, (0, 0))?;
            let s = m.conv("branch7x7x3_2", s, (1, 7), 1, (0, 3))?;
            let s = m.conv("branch7x7x3_3", s, (7, 1), 1, (3, 0))?;
            let s = m.conv("branch7x7x3_4", s, (3, 3), 2, (0, 0))?;
            let p = m.b.pool(&m.node("max_pool2d"), x, max)?;
            vec![b3, s, p]
        }
        Kind::E => {
            let b1 = m.conv("branch1x1", x, (1, 1), 1, (0, 0))?;
            let t = m.conv("branch3x3_1", x, (1, 1), 1, (0, 0))?;
            let ta = m.conv("branch3x3_2a", t, (1, 3), 1, (0, 1))?;
            let tb = m.conv("branch3x3_2b", t, (3, 1), 1, (1, 0))?;
            let t = m.b.op(&m.node("cat_3x3"), Op::Concat(Concat), &[ta, tb])?;
            let d = m.conv("branch3x3dbl_1", x, (1, 1), 1, (0, 0))?;
            let d = m.conv("branch3x3dbl_2", d, (3, 3), 1, (1, 1))?;
            let da = m.conv("branch3x3dbl_3a", d, (1, 3), 1, (0, 1))?;
            let db = m.conv("branch3x3dbl_3b", d, (3, 1), 1, (1, 0))?;
            let d =
                m.b.op(&m.node("cat_3x3dbl"), Op::Concat(Concat), &[da, db])?;
            let p = m.b.pool(&m.node("avg_pool2d"), x, avg)?;
            let p = m.conv("branch_pool", p, (1, 1), 1, (0, 0))?;
            vec![b1, t, d, p]
        }
    };
    m.b.op(&m.node("cat"), Op::Concat(Concat), &outputs)
}

impl Layout for InceptionConfig {
    fn name(&self) -> String {
        "inception_v3".into()
    }

    fn build(&self, b: &mut Builder) -> Result<()> {
        let max = Pool::square(PoolKind::Max, 3, 2, 0, false);
        let mut x = b.last();
        for (name, k, stride, pad, pool) in STEM {
            x = basic_conv(b, self, name, x, (k, k), stride, (pad, pad))?;
            if let Some(pool) = pool {
                x = b.pool(pool, x, max)?;
            }
        }
        for (name, kind) in MODULES {
            x = module(b, self, name, kind, x)?;
        }
        x = b.global_avg_pool("avgpool", x)?;
        x = b.op("dropout", Op::Dropout(Dropout), &[x])?;
        x = b.op("flatten", Op::Flatten(Flatten), &[x])?;
        b.head(self.head.as_deref(), x, self.classes)?;
        Ok(())
    }

    /// The last Inception module.
    fn cam_layer(&self) -> Option<String> {
        Some("Mixed_7c".into())
    }

    fn input_size(&self) -> Option<[usize; 2]> {
        Some([299, 299])
    }
}
