//! torchvision's VGG: `features.N` (conv, [bn], relu, ..., maxpool), `avgpool` to 7x7,
//! `classifier.0..6` (linear, relu, dropout, linear, relu, dropout, linear).

use anyhow::{bail, Result};

use super::builder::{Builder, ConvSpec};
use super::{classifier_or_none, has_classifier, sized, Arch, Family, Layout};
use crate::model::load::StateDict;
use crate::model::ops::{AdaptiveAvgPool, Dropout, Flatten, Op, Pool, PoolKind};

/// One entry of a VGG feature configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VggItem {
    /// A 3x3 convolution with this many output channels (then [batch norm and] ReLU).
    Conv(usize),
    /// A 2x2 max pool with stride 2.
    Pool,
}

#[derive(Debug, Clone)]
pub struct VggConfig {
    pub features: Vec<VggItem>,
    pub batch_norm: bool,
    /// Width of the two hidden classifier layers (4096 in torchvision).
    pub hidden: usize,
    pub classes: usize,
    /// Whether the checkpoint has the classifier (false: a backbone saved without it).
    pub classifier: bool,
}

/// torchvision's configurations "A", "B", "D", "E" (0 stands for a pool).
const CONFIGS: [(u32, &[usize]); 4] = [
    (11, &[64, 0, 128, 0, 256, 256, 0, 512, 512, 0, 512, 512, 0]),
    (
        13,
        &[
            64, 64, 0, 128, 128, 0, 256, 256, 0, 512, 512, 0, 512, 512, 0,
        ],
    ),
    (
        16,
        &[
            64, 64, 0, 128, 128, 0, 256, 256, 256, 0, 512, 512, 512, 0, 512, 512, 512, 0,
        ],
    ),
    (
        19,
        &[
            64, 64, 0, 128, 128, 0, 256, 256, 256, 256, 0, 512, 512, 512, 512, 0, 512, 512, 512,
            512, 0,
        ],
    ),
];

pub const FAMILY: Family = Family {
    title: "torchvision VGG",
    names: &[
        "vgg11", "vgg11_bn", "vgg13", "vgg13_bn", "vgg16", "vgg16_bn", "vgg19", "vgg19_bn",
    ],
    detect: |dict| {
        let stem = dict.shape("features.0.weight")?;
        // (SqueezeNet 1.1's stem is 3x3 too.)
        let squeezenet = dict.contains("features.3.squeeze.weight");
        (stem.len() == 4
            && stem[2..] == [3, 3]
            && !squeezenet
            && classifier_or_none(dict, "classifier.6"))
        .then(|| detect(dict).map(Arch::new))
    },
    standard: |name, classes, dict| {
        let cfg = VggConfig::standard(name, classes)?;
        Some(sized(cfg, dict, VggConfig::with_widths_of))
    },
};

impl VggConfig {
    /// `vgg11` .. `vgg19_bn` as in torchvision.
    pub fn standard(name: &str, classes: usize) -> Option<VggConfig> {
        let (base, batch_norm) = match name.strip_suffix("_bn") {
            Some(b) => (b, true),
            None => (name, false),
        };
        let depth: u32 = base.strip_prefix("vgg")?.parse().ok()?;
        let (_, cfg) = CONFIGS.iter().find(|(d, _)| *d == depth)?;
        Some(VggConfig {
            features: cfg
                .iter()
                .map(|&c| {
                    if c == 0 {
                        VggItem::Pool
                    } else {
                        VggItem::Conv(c)
                    }
                })
                .collect(),
            batch_norm,
            hidden: 4096,
            classes,
            classifier: true,
        })
    }

    /// Module index of each feature item inside `features`.
    pub fn feature_indices(&self) -> Vec<usize> {
        let mut idx = 0;
        self.features
            .iter()
            .map(|item| {
                let at = idx;
                idx += match item {
                    VggItem::Conv(_) if self.batch_norm => 3,
                    VggItem::Conv(_) => 2,
                    VggItem::Pool => 1,
                };
                at
            })
            .collect()
    }

    /// The same layout with the channel counts and class count found in `dict`.
    pub fn with_widths_of(mut self, dict: &StateDict) -> VggConfig {
        let indices = self.feature_indices();
        for (item, idx) in self.features.iter_mut().zip(indices) {
            if let (VggItem::Conv(c), Some(s)) =
                (item, dict.shape(&format!("features.{idx}.weight")))
            {
                *c = s[0];
            }
        }
        if let Some(s) = dict.shape("classifier.0.weight") {
            self.hidden = s[0];
        }
        if let Some(s) = dict.shape("classifier.6.weight") {
            self.classes = s[0];
        }
        self.classifier = has_classifier(dict, "classifier.6");
        self
    }
}

impl Layout for VggConfig {
    fn name(&self) -> String {
        let convs = self
            .features
            .iter()
            .filter(|i| matches!(i, VggItem::Conv(_)))
            .count();
        let standard = CONFIGS.iter().any(|(d, cfg)| {
            *d as usize == convs + 3
                && cfg
                    .iter()
                    .map(|&c| c == 0)
                    .eq(self.features.iter().map(|i| *i == VggItem::Pool))
        });
        let base = if standard {
            format!("vgg{}", convs + 3)
        } else {
            format!("vgg-like ({convs} conv layers)")
        };
        if self.batch_norm {
            format!("{base}_bn")
        } else {
            base
        }
    }

    fn build(&self, b: &mut Builder) -> Result<()> {
        build(self, b)
    }

    /// `features[-1]`, the last max pool.
    fn cam_layer(&self) -> Option<String> {
        Some("features".into())
    }

    fn input_size(&self) -> Option<[usize; 2]> {
        None
    }
}

fn build(cfg: &VggConfig, b: &mut Builder) -> Result<()> {
    let mut x = b.last();
    for (item, idx) in cfg.features.iter().zip(cfg.feature_indices()) {
        match item {
            VggItem::Conv(c) => {
                x = b.conv(&format!("features.{idx}"), x, ConvSpec::new(*c, 3, 1, true))?;
                let mut next = idx + 1;
                if cfg.batch_norm {
                    x = b.batch_norm(&format!("features.{next}"), x, 1e-5)?;
                    next += 1;
                }
                x = b.relu(&format!("features.{next}"), x)?;
            }
            VggItem::Pool => {
                let pool = Pool::square(PoolKind::Max, 2, 2, 0, false);
                x = b.pool(&format!("features.{idx}"), x, pool)?;
            }
        }
    }
    let pool = AdaptiveAvgPool { out_h: 7, out_w: 7 };
    x = b.op("avgpool", Op::AdaptiveAvgPool(pool), &[x])?;
    x = b.op("flatten", Op::Flatten(Flatten), &[x])?;
    if cfg.classifier {
        x = b.linear("classifier.0", x, cfg.hidden, true)?;
        x = b.relu("classifier.1", x)?;
        x = b.op("classifier.2", Op::Dropout(Dropout), &[x])?;
        x = b.linear("classifier.3", x, cfg.hidden, true)?;
        x = b.relu("classifier.4", x)?;
        x = b.op("classifier.5", Op::Dropout(Dropout), &[x])?;
        b.classifier("classifier.6", x, cfg.classes)?;
    }
    Ok(())
}

/// The layout of a VGG checkpoint: convolutions and pools from the indices under `features.`.
fn detect(dict: &StateDict) -> Result<VggConfig> {
    let mut convs: Vec<(usize, usize)> = dict
        .names()
        .filter_map(|n| {
            n.strip_prefix("features.")?
                .strip_suffix(".weight")?
                .parse()
                .ok()
        })
        .filter_map(|i: usize| {
            let s = dict.shape(&format!("features.{i}.weight"))?;
            (s.len() == 4).then(|| (i, s[0]))
        })
        .collect();
    convs.sort_unstable();
    if convs.is_empty() {
        bail!("unrecognised VGG layout: no 4-d convolution weights under features.");
    }
    let batch_norm = dict.contains(&format!("features.{}.running_var", convs[0].0 + 1));
    let step = if batch_norm { 3 } else { 2 };
    let mut features = Vec::new();
    let mut expected = 0;
    for &(idx, out) in &convs {
        match idx.checked_sub(expected) {
            Some(0) => {}
            Some(1) => features.push(VggItem::Pool),
            _ => bail!("unrecognised VGG layout: unexpected convolution at features.{idx}"),
        }
        features.push(VggItem::Conv(out));
        expected = idx + step;
    }
    features.push(VggItem::Pool);
    let first = |name: &str, default: usize| {
        dict.shape(name)
            .and_then(|s| s.first().copied())
            .unwrap_or(default)
    };
    let hidden = first("classifier.0.weight", 4096);
    let classes = first("classifier.6.weight", 1000);
    Ok(VggConfig {
        features,
        batch_norm,
        hidden,
        classes,
        classifier: has_classifier(dict, "classifier.6"),
    })
}
