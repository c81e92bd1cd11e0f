//! torchvision's AlexNet: `features.N` (conv 11x11/4, relu, maxpool 3/2, conv 5x5, relu, maxpool,
//! three 3x3 convs with relus, maxpool), `avgpool` to 6x6, `classifier.0..6` (dropout, linear,
//! relu, dropout, linear, relu, linear).

use anyhow::{bail, Result};

use super::builder::{Builder, ConvSpec};
use super::{classifier_or_none, has_classifier, rows, sized, Arch, Family, Layout};
use crate::model::load::StateDict;
use crate::model::ops::{AdaptiveAvgPool, Dropout, Flatten, Op, Pool, PoolKind};

#[derive(Debug, Clone)]
pub struct AlexNetConfig {
    /// Output channels of the five convolutions (64, 192, 384, 256, 256 in torchvision).
    pub convs: [usize; 5],
    /// Width of the two hidden classifier layers (4096).
    pub hidden: usize,
    pub classes: usize,
    /// Whether the checkpoint has the classifier (false: a backbone saved without it).
    pub classifier: bool,
}

pub const FAMILY: Family = Family {
    title: "torchvision AlexNet",
    names: &["alexnet"],
    detect: |dict| {
        let stem = dict.shape("features.0.weight")?;
        (stem.len() == 4 && stem[2..] == [11, 11] && classifier_or_none(dict, "classifier.1"))
            .then(|| detect(dict).map(Arch::new))
    },
    standard: |name, classes, dict| {
        (name == "alexnet").then(|| {
            sized(
                AlexNetConfig::standard(classes),
                dict,
                AlexNetConfig::with_widths_of,
            )
        })
    },
};

/// Index under `features.` of each convolution.
const CONV_INDICES: [usize; 5] = [0, 3, 6, 8, 10];

impl AlexNetConfig {
    pub fn standard(classes: usize) -> AlexNetConfig {
        AlexNetConfig {
            convs: [64, 192, 384, 256, 256],
            hidden: 4096,
            classes,
            classifier: true,
        }
    }

    /// The same layout with the widths and class count found in `dict`.
    pub fn with_widths_of(mut self, dict: &StateDict) -> AlexNetConfig {
        let rows = |name: &str| rows(dict, name);
        for (c, i) in self.convs.iter_mut().zip(CONV_INDICES) {
            if let Some(n) = rows(&format!("features.{i}.weight")) {
                *c = n;
            }
        }
        if let Some(n) = rows("classifier.1.weight") {
            self.hidden = n;
        }
        if let Some(n) = rows("classifier.6.weight") {
            self.classes = n;
        }
        self.classifier = has_classifier(dict, "classifier.6");
        self
    }
}

fn detect(dict: &StateDict) -> Result<AlexNetConfig> {
    for i in CONV_INDICES {
        if !dict.contains(&format!("features.{i}.weight")) {
            bail!("unrecognised AlexNet layout: no convolution at features.{i}");
        }
    }
    Ok(AlexNetConfig::standard(1000).with_widths_of(dict))
}

impl Layout for AlexNetConfig {
    fn name(&self) -> String {
        "alexnet".into()
    }

    fn build(&self, b: &mut Builder) -> Result<()> {
        let pool = || Pool::square(PoolKind::Max, 3, 2, 0, false);
        let f = |i: usize| format!("features.{i}");
        let mut x = b.last();
        // (index, kernel, stride, padding), each followed by a relu; pools after the first,
        // second and fifth.
        let convs = [
            (0, 11, 4, 2),
            (3, 5, 1, 2),
            (6, 3, 1, 1),
            (8, 3, 1, 1),
            (10, 3, 1, 1),
        ];
        for (&out, (i, k, s, p)) in self.convs.iter().zip(convs) {
            x = b.conv(&f(i), x, ConvSpec::new(out, k, p, true).stride(s))?;
            x = b.relu(&f(i + 1), x)?;
            if matches!(i, 0 | 3 | 10) {
                x = b.pool(&f(i + 2), x, pool())?;
            }
        }
        let avg = AdaptiveAvgPool { out_h: 6, out_w: 6 };
        x = b.op("avgpool", Op::AdaptiveAvgPool(avg), &[x])?;
        x = b.op("flatten", Op::Flatten(Flatten), &[x])?;
        if self.classifier {
            x = b.op("classifier.0", Op::Dropout(Dropout), &[x])?;
            x = b.linear("classifier.1", x, self.hidden, true)?;
            x = b.relu("classifier.2", x)?;
            x = b.op("classifier.3", Op::Dropout(Dropout), &[x])?;
            x = b.linear("classifier.4", x, self.hidden, true)?;
            x = b.relu("classifier.5", x)?;
            b.classifier("classifier.6", x, self.classes)?;
        }
        Ok(())
    }

    /// `features[-1]`, the last max pool.
    fn cam_layer(&self) -> Option<String> {
        Some("features".into())
    }

    fn input_size(&self) -> Option<[usize; 2]> {
        None
    }
}
