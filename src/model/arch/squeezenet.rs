//! torchvision's SqueezeNet 1.0 and 1.1: a stem conv, max pools with `ceil_mode`, and Fire
//! modules `features.N` (`squeeze` 1x1 + `squeeze_activation`, then `expand1x1` and
//! `expand3x3`, each with its `_activation`, concatenated), then `classifier.0..3` (dropout, a
//! 1x1 conv to the classes, relu, global average pooling).
//!
//! The Fire module's concatenation and the final flatten are functional steps in PyTorch's
//! `forward`; here they are nodes named `features.N.cat` and `flatten`. A Fire module's name
//! (`features.12`) stands for its output, the concatenation.

use anyhow::{bail, Result};

use super::builder::{Builder, ConvSpec};
use super::{classifier_or_none, has_classifier, rows, sized, Arch, Family, Layout};
use crate::model::graph::NodeId;
use crate::model::load::StateDict;
use crate::model::ops::{Concat, Dropout, Flatten, Op, Pool, PoolKind};

/// One entry of `features` after the stem.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SqueezeItem {
    /// Max pool 3/2 with ceil_mode.
    Pool,
    /// A Fire module: squeeze width, and the width of each of its two expand convolutions.
    Fire(usize, usize),
}

#[derive(Debug, Clone)]
pub struct SqueezeNetConfig {
    /// 1.0 has a 7x7 stem of 96 channels, 1.1 a 3x3 stem of 64.
    pub version: Version,
    pub stem: usize,
    /// `features.3` onwards (the stem conv, its relu and a pool are `features.0..2`).
    pub features: Vec<SqueezeItem>,
    pub classes: usize,
    /// Whether the checkpoint has the classifier (false: a backbone saved without it).
    pub classifier: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    V1_0,
    V1_1,
}

pub const FAMILY: Family = Family {
    title: "torchvision SqueezeNet",
    names: &["squeezenet1_0", "squeezenet1_1"],
    detect: |dict| {
        (dict.contains("features.0.weight")
            && dict.contains("features.3.squeeze.weight")
            && classifier_or_none(dict, "classifier.1"))
        .then(|| detect(dict).map(Arch::new))
    },
    standard: |name, classes, dict| {
        let version = match name {
            "squeezenet1_0" => Version::V1_0,
            "squeezenet1_1" => Version::V1_1,
            _ => return None,
        };
        let cfg = SqueezeNetConfig::standard(version, classes);
        Some(sized(cfg, dict, SqueezeNetConfig::with_widths_of))
    },
};

impl SqueezeNetConfig {
    pub fn standard(version: Version, classes: usize) -> SqueezeNetConfig {
        use SqueezeItem::{Fire, Pool};
        let (stem, features) = match version {
            Version::V1_0 => (
                96,
                vec![
                    Fire(16, 64),
                    Fire(16, 64),
                    Fire(32, 128),
                    Pool,
                    Fire(32, 128),
                    Fire(48, 192),
                    Fire(48, 192),
                    Fire(64, 256),
                    Pool,
                    Fire(64, 256),
                ],
            ),
            Version::V1_1 => (
                64,
                vec![
                    Fire(16, 64),
                    Fire(16, 64),
                    Pool,
                    Fire(32, 128),
                    Fire(32, 128),
                    Pool,
                    Fire(48, 192),
                    Fire(48, 192),
                    Fire(64, 256),
                    Fire(64, 256),
                ],
            ),
        };
        SqueezeNetConfig {
            version,
            stem,
            features,
            classes,
            classifier: true,
        }
    }

    /// The same layout with the widths and class count found in `dict`.
    pub fn with_widths_of(mut self, dict: &StateDict) -> SqueezeNetConfig {
        let rows = |name: &str| rows(dict, name);
        if let Some(n) = rows("features.0.weight") {
            self.stem = n;
        }
        for (i, item) in self.features.iter_mut().enumerate() {
            if let SqueezeItem::Fire(squeeze, expand) = item {
                let p = format!("features.{}", i + 3);
                if let Some(n) = rows(&format!("{p}.squeeze.weight")) {
                    *squeeze = n;
                }
                if let Some(n) = rows(&format!("{p}.expand1x1.weight")) {
                    *expand = n;
                }
            }
        }
        if let Some(n) = rows("classifier.1.weight") {
            self.classes = n;
        }
        self.classifier = has_classifier(dict, "classifier.1");
        self
    }
}

/// The version from the stem's kernel (7x7 or 3x3), widths from the weights.
fn detect(dict: &StateDict) -> Result<SqueezeNetConfig> {
    let version = match dict.shape("features.0.weight") {
        Some([_, _, 7, 7]) => Version::V1_0,
        Some([_, _, 3, 3]) => Version::V1_1,
        other => bail!("unrecognised SqueezeNet stem: features.0.weight has shape {other:?}"),
    };
    Ok(SqueezeNetConfig::standard(version, 1000).with_widths_of(dict))
}

fn fire(b: &mut Builder, name: &str, x: NodeId, squeeze: usize, expand: usize) -> Result<NodeId> {
    let p = |s: &str| format!("{name}.{s}");
    let s = b.conv(&p("squeeze"), x, ConvSpec::new(squeeze, 1, 0, true))?;
    let s = b.relu(&p("squeeze_activation"), s)?;
    let e1 = b.conv(&p("expand1x1"), s, ConvSpec::new(expand, 1, 0, true))?;
    let e1 = b.relu(&p("expand1x1_activation"), e1)?;
    let e3 = b.conv(&p("expand3x3"), s, ConvSpec::new(expand, 3, 1, true))?;
    let e3 = b.relu(&p("expand3x3_activation"), e3)?;
    b.op(&p("cat"), Op::Concat(Concat), &[e1, e3])
}

impl Layout for SqueezeNetConfig {
    fn name(&self) -> String {
        match self.version {
            Version::V1_0 => "squeezenet1_0".into(),
            Version::V1_1 => "squeezenet1_1".into(),
        }
    }

    fn build(&self, b: &mut Builder) -> Result<()> {
        let pool = || Pool::square(PoolKind::Max, 3, 2, 0, true);
        let stem = match self.version {
            Version::V1_0 => ConvSpec::new(self.stem, 7, 0, true).stride(2),
            Version::V1_1 => ConvSpec::new(self.stem, 3, 0, true).stride(2),
        };
        let mut x = b.last();
        x = b.conv("features.0", x, stem)?;
        x = b.relu("features.1", x)?;
        x = b.pool("features.2", x, pool())?;
        for (i, item) in self.features.iter().enumerate() {
            let name = format!("features.{}", i + 3);
            x = match *item {
                SqueezeItem::Pool => b.pool(&name, x, pool())?,
                SqueezeItem::Fire(squeeze, expand) => fire(b, &name, x, squeeze, expand)?,
            };
        }
        if self.classifier {
            x = b.op("classifier.0", Op::Dropout(Dropout), &[x])?;
            x = b.conv("classifier.1", x, ConvSpec::new(self.classes, 1, 0, true))?;
            x = b.relu("classifier.2", x)?;
            x = b.global_avg_pool("classifier.3", x)?;
            let scores = b.op("flatten", Op::Flatten(Flatten), &[x])?;
            b.scores(scores);
        }
        Ok(())
    }

    /// `features[-1]`, the last Fire module (not the class-score map after it).
    fn cam_layer(&self) -> Option<String> {
        Some("features".into())
    }

    fn input_size(&self) -> Option<[usize; 2]> {
        None
    }
}
