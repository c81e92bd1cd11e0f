//! timm's `config.json`, as `save_pretrained` / `push_to_hf_hub` write it beside
//! `model.safetensors` (and the Hugging Face Hub serves it): the architecture's name, the class
//! count, the input size, mean and std, and the class names. The older flat layout (everything at
//! the top level, class names as `labels`) is read too. A `config.json` without an
//! `architecture` string (a transformers model's, say) is not timm's and is left alone.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::Deserialize;

use super::card::ModelCard;

/// The weights files a timm / Hub model folder holds, in the order they are looked for.
const WEIGHTS_FILES: [&str; 2] = ["model.safetensors", "pytorch_model.bin"];

/// What a timm `config.json` says of its model.
#[derive(Debug, Clone, PartialEq)]
pub struct HubConfig {
    /// timm's model name (`resnet50d`), without a pretrained tag.
    pub architecture: String,
    pub classes: Option<usize>,
    /// `[height, width]` of the input the weights were trained at.
    pub input_size: Option<[usize; 2]>,
    pub mean: Option<[f32; 3]>,
    pub std: Option<[f32; 3]>,
    /// One name per class: the descriptions where every class has one, else the names.
    pub labels: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
struct File {
    architecture: Option<String>,
    num_classes: Option<usize>,
    pretrained_cfg: Option<Pretrained>,
    label_names: Option<Labels>,
    label_descriptions: Option<HashMap<String, String>>,
    /// The flat layout's fields.
    #[serde(flatten)]
    flat: Pretrained,
}

#[derive(Debug, Default, Deserialize)]
struct Pretrained {
    num_classes: Option<usize>,
    input_size: Option<Vec<usize>>,
    mean: Option<Vec<f32>>,
    std: Option<Vec<f32>>,
    label_names: Option<Labels>,
    label_descriptions: Option<HashMap<String, String>>,
    /// The flat layout's name for `label_names`.
    labels: Option<Labels>,
}

/// Class names as a list, or as a map from class index to name (where indices have gaps).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Labels {
    List(Vec<String>),
    Map(BTreeMap<String, String>),
}

impl HubConfig {
    /// The `config.json` beside `weights`, if there is one and it is timm's.
    pub fn beside(weights: &Path) -> Result<Option<HubConfig>> {
        let dir = weights.parent().unwrap_or(Path::new("."));
        let path = dir.join("config.json");
        if !path.is_file() {
            return Ok(None);
        }
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        HubConfig::parse(&text).with_context(|| format!("{}", path.display()))
    }

    /// The weights file of a timm / Hub model folder (`model.safetensors` or
    /// `pytorch_model.bin`) with the timm `config.json` beside it.
    pub fn weights_in(folder: &Path) -> Result<Option<(PathBuf, HubConfig)>> {
        let Some(weights) = WEIGHTS_FILES
            .iter()
            .map(|f| folder.join(f))
            .find(|p| p.is_file())
        else {
            return Ok(None);
        };
        Ok(HubConfig::beside(&weights)?.map(|config| (weights, config)))
    }

    /// Parses a `config.json`'s text: `None` when it names no `architecture` (not timm's).
    pub fn parse(text: &str) -> Result<Option<HubConfig>> {
        let value: serde_json::Value =
            serde_json::from_str(text).map_err(|e| anyhow::anyhow!("not valid JSON: {e}"))?;
        if !value.get("architecture").is_some_and(|a| a.is_string()) {
            return Ok(None);
        }
        let file: File = serde_json::from_value(value)
            .map_err(|e| anyhow::anyhow!("not a timm config.json: {e}"))?;
        let pre = file.pretrained_cfg.unwrap_or_default();
        let flat = file.flat;
        let architecture = file.architecture.unwrap_or_default();
        // A pretrained tag (`resnet50.a1_in1k`) names the weights, not the layout.
        let architecture = match architecture.split_once('.') {
            Some((name, _)) => name.to_string(),
            None => architecture,
        };
        let classes = file.num_classes.or(pre.num_classes).or(flat.num_classes);
        let input_size = match pre.input_size.or(flat.input_size).as_deref() {
            None => None,
            Some(&[_, h, w]) if (1..=4096).contains(&h) && (1..=4096).contains(&w) => Some([h, w]),
            Some(other) => bail!("input_size {other:?} is not [channels, height, width]"),
        };
        let names = file
            .label_names
            .or(pre.label_names)
            .or(pre.labels)
            .or(flat.label_names)
            .or(flat.labels);
        let descriptions = file
            .label_descriptions
            .or(pre.label_descriptions)
            .or(flat.label_descriptions);
        let labels = names
            .map(|n| class_names(n, descriptions.as_ref()))
            .transpose()?;
        Ok(Some(HubConfig {
            architecture,
            classes,
            input_size,
            mean: per_channel("mean", pre.mean.or(flat.mean))?,
            std: per_channel("std", pre.std.or(flat.std))?,
            labels,
        }))
    }

    /// Fills a bare checkpoint's card: the input size, mean, std and class names. The
    /// architecture is still detected from the weights: timm and torchvision give some different
    /// layouts the same name (`convnext_tiny`, `efficientnet_b0`).
    pub fn apply(&self, card: &mut ModelCard) {
        if let Some(size) = self.input_size {
            card.input_size = size;
        }
        card.mean = self.mean.or(card.mean);
        card.std = self.std.or(card.std);
        card.label_names = self.labels.clone();
    }

    /// Refuses a state dict of timm's `tf_` ports: their TensorFlow "same" padding does not
    /// show in the weights, and building them as the others would give other outputs.
    pub fn check_buildable(&self) -> Result<()> {
        if self.architecture.starts_with("tf_") {
            bail!(
                "config.json names timm's {}, a port from TensorFlow whose \"same\" padding \
                 convscope does not build (the weights alone would give other outputs)",
                self.architecture
            );
        }
        Ok(())
    }
}

/// A mean or std: three values, or one for every channel (a grayscale model's).
fn per_channel(what: &str, values: Option<Vec<f32>>) -> Result<Option<[f32; 3]>> {
    let Some(values) = values else {
        return Ok(None);
    };
    let three = match values[..] {
        [v] => [v; 3],
        [r, g, b] => [r, g, b],
        _ => bail!("{what} has {} values; convscope reads 1 or 3", values.len()),
    };
    if what == "std" && three.iter().any(|&s| s <= 0.0 || !s.is_finite()) {
        bail!("std values must be positive");
    }
    Ok(Some(three))
}

/// One name per class index, each replaced by its description where every name has one
/// (ImageNet's synsets `n01440764` read as "tench, Tinca tinca").
fn class_names(
    names: Labels,
    descriptions: Option<&HashMap<String, String>>,
) -> Result<Vec<String>> {
    let names = match names {
        Labels::List(list) => list,
        Labels::Map(map) => {
            let mut indexed = map
                .into_iter()
                .map(|(k, v)| {
                    k.parse::<usize>()
                        .map(|i| (i, v))
                        .map_err(|_| anyhow::anyhow!("label_names key '{k}' is not a class index"))
                })
                .collect::<Result<Vec<_>>>()?;
            indexed.sort_by_key(|(i, _)| *i);
            let mut list = Vec::new();
            for (i, name) in indexed {
                // Classes the map leaves out are named by their index.
                while list.len() < i {
                    list.push(format!("class {}", list.len()));
                }
                list.push(name);
            }
            list
        }
    };
    Ok(match descriptions {
        Some(d) if names.iter().all(|n| d.contains_key(n)) => {
            names.iter().map(|n| d[n].clone()).collect()
        }
        _ => names,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configs_read_in_both_layouts() {
        let nested = r#"{"architecture": "resnet50d.ra2_in1k", "num_classes": 3,
            "pretrained_cfg": {"input_size": [3, 256, 192], "mean": [0.5, 0.4, 0.3],
            "std": [0.2, 0.2, 0.2], "crop_pct": 0.95},
            "label_names": ["n1", "n2", "n3"],
            "label_descriptions": {"n1": "cat", "n2": "dog", "n3": "fox"}}"#;
        let c = HubConfig::parse(nested).unwrap().unwrap();
        assert_eq!(c.architecture, "resnet50d");
        assert_eq!(c.classes, Some(3));
        assert_eq!(c.input_size, Some([256, 192]));
        assert_eq!(c.mean, Some([0.5, 0.4, 0.3]));
        assert_eq!(c.labels.unwrap(), ["cat", "dog", "fox"]);
        let flat = r#"{"architecture": "densenet121", "num_classes": 2, "input_size": [1, 64, 64],
            "mean": [0.5], "std": [0.25], "labels": {"0": "no", "2": "yes"}}"#;
        let c = HubConfig::parse(flat).unwrap().unwrap();
        assert_eq!(c.mean, Some([0.5; 3]));
        assert_eq!(c.std, Some([0.25; 3]));
        assert_eq!(c.labels.unwrap(), ["no", "class 1", "yes"]);
        // A transformers config is not timm's.
        assert_eq!(
            HubConfig::parse(r#"{"architectures": ["BertModel"]}"#).unwrap(),
            None
        );
        assert!(HubConfig::parse(r#"{"architecture": "x", "mean": [1, 2]}"#).is_err());
        assert!(HubConfig::parse(r#"{"architecture": "x", "std": [0, 1, 1]}"#).is_err());
        assert!(HubConfig::parse("{").is_err());
    }
}
