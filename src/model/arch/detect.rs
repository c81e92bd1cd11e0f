//! Infers the architecture of a checkpoint from its parameter names and shapes.

use anyhow::{bail, Result};

use super::resnet::ResNetConfig;
use super::vgg::{VggConfig, VggItem};
use super::Arch;
use crate::model::load::StateDict;

pub fn detect(dict: &StateDict) -> Result<Arch> {
    if dict.contains("features.0.weight") && dict.contains("classifier.6.weight") {
        return detect_vgg(dict).map(Arch::Vgg);
    }
    if dict.contains("conv1.weight")
        && dict.contains("layer1.0.conv1.weight")
        && dict.contains("fc.weight")
    {
        return detect_resnet(dict).map(Arch::ResNet);
    }
    let mut names: Vec<&str> = dict.names().collect();
    names.sort_unstable();
    let sample: Vec<&str> = names.into_iter().take(4).collect();
    bail!(
        "the checkpoint matches no known architecture (torchvision VGG or ResNet); its keys start {}; pass --arch NAME or use a model folder with a model.toml",
        sample.join(", ")
    )
}

fn detect_vgg(dict: &StateDict) -> Result<VggConfig> {
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
    })
}

fn detect_resnet(dict: &StateDict) -> Result<ResNetConfig> {
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
