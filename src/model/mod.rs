//! The network as data: loading checkpoints, building the graph, running it forward and back.

pub mod arch;
mod backward;
pub mod card;
mod cpu;
pub mod device;
pub mod graph;
pub mod head;
pub mod hub_config;
pub mod load;
pub mod memory;
pub mod onnx;
pub mod ops;
mod pickle_protocol;
pub mod prediction;
mod pth;
mod strided;
pub mod tree;
pub mod weights;
pub mod workers;

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use candle_core::Device;

pub use arch::Arch;
pub use card::{ModelCard, Normalisation};
pub use graph::{Activations, Graph, Keep, NodeId, UnknownLayer};
pub use head::Head;
pub use hub_config::HubConfig;
pub use load::StateDict;
pub use prediction::Prediction;
pub use weights::{CheckpointWeights, RandomWeights, Weights};

/// Values per image of the graph's output (the class count of a classifier).
fn shape_outputs(graph: &Graph) -> usize {
    graph.node(graph.output()).shape.iter().skip(1).product()
}

/// The 1000 ImageNet class names, in torchvision's order.
const IMAGENET_LABELS: &str = include_str!("../../models/imagenet_classes.txt");

/// A loaded network with what it needs around it: input size, normalisation and class names.
pub struct Model {
    /// Display name: the model folder's or checkpoint file's name.
    pub name: String,
    /// Architecture name, e.g. `resnet50`.
    pub arch: String,
    /// The layer its family recommends for class activation maps (pytorch-grad-cam's
    /// suggestion), when it has one.
    pub cam_layer: Option<String>,
    pub graph: Graph,
    pub normalisation: Normalisation,
    /// One name per class.
    pub labels: Vec<String>,
    /// How the outputs become class scores and probabilities; `None` for a backbone saved
    /// without its classification head (its layers can be explored, it has no classes).
    pub head: Option<Head>,
    pub device: Device,
    /// The model folder, model.toml or checkpoint it came from.
    pub path: PathBuf,
}

/// What the command line says over a model.toml or a bare checkpoint's defaults.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// The architecture of a state dict, instead of detecting it.
    pub arch: Option<String>,
    /// The model's names inside the checkpoint's (`net.`).
    pub prefix: Option<String>,
    /// The input's `[height, width]`: a fully convolutional state dict run at another size, or
    /// an ONNX graph's free dimensions.
    pub size: Option<[usize; 2]>,
}

impl Model {
    /// Opens a model folder (with model.toml), a model.toml, or a checkpoint file.
    pub fn open(path: &Path, arch: Option<&str>, device: &Device) -> Result<Model> {
        let overrides = Overrides {
            arch: arch.map(str::to_string),
            ..Overrides::default()
        };
        Model::open_with(path, &overrides, device)
    }

    /// [`Model::open`] with the command line's [`Overrides`] taking the place of model.toml's
    /// settings.
    pub fn open_with(path: &Path, overrides: &Overrides, device: &Device) -> Result<Model> {
        let meta = std::fs::metadata(path)
            .with_context(|| format!("cannot open model {}", path.display()))?;
        // A timm / Hub folder (config.json and model.safetensors) opens as its weights file.
        let hub_folder = match meta.is_dir() && !path.join("model.toml").is_file() {
            true => Some(HubConfig::weights_in(path)?.with_context(|| {
                format!(
                    "{} is a folder without a model.toml (or a timm config.json beside \
                     model.safetensors)",
                    path.display()
                )
            })?),
            false => None,
        };
        let toml_path = if hub_folder.is_some() {
            None
        } else if meta.is_dir() {
            Some(path.join("model.toml"))
        } else if path.extension().is_some_and(|e| e == "toml") {
            Some(path.to_path_buf())
        } else {
            None
        };
        let mut hub = None;
        let (mut card, base) = match &toml_path {
            Some(p) => (
                ModelCard::read(p)?,
                p.parent().unwrap_or(Path::new(".")).to_path_buf(),
            ),
            None => {
                let weights = hub_folder.as_ref().map_or(path, |(w, _)| w.as_path());
                let mut card = ModelCard::for_checkpoint(weights);
                hub = match &hub_folder {
                    Some((_, config)) => Some(config.clone()),
                    None => HubConfig::beside(weights)?,
                };
                if let Some(config) = &hub {
                    if !onnx::is_onnx(weights) {
                        config.check_buildable()?;
                    }
                    config.apply(&mut card);
                }
                (card, PathBuf::from("."))
            }
        };
        if let Some(prefix) = &overrides.prefix {
            card.prefix = Some(prefix.clone());
        }
        if let Some(size) = overrides.size {
            card.input_size = size;
        }
        let name = display_name(path);
        // A bare checkpoint runs at its family's own size unless one is asked for or its
        // config.json gives one.
        let hub_sized = hub.as_ref().is_some_and(|c| c.input_size.is_some());
        let bare = toml_path.is_none() && overrides.size.is_none() && !hub_sized;
        let model = Model::from_card(
            &card,
            &base,
            overrides.arch.as_deref(),
            device,
            name,
            path,
            bare,
        )
        .map_err(|e| match &hub {
            // Which timm model the weights should have been, where they are not detected.
            Some(config) if !onnx::is_onnx(&base.join(&card.weights)) => {
                e.context(format!("config.json names timm's {}", config.architecture))
            }
            Some(_) | None => e,
        })?;
        if let Some([h, w]) = overrides.size {
            let (_, gh, gw) = model.graph.input_size();
            if (gh, gw) != (h, w) {
                bail!(
                    "{} takes {gh}x{gw} images (fixed in its graph); --size {h}x{w} applies to sizes a graph leaves free",
                    path.display()
                );
            }
        }
        Ok(model)
    }

    fn from_card(
        card: &ModelCard,
        base: &Path,
        arch_override: Option<&str>,
        device: &Device,
        name: String,
        path: &Path,
        bare: bool,
    ) -> Result<Model> {
        let weights_path = base.join(&card.weights);
        let (graph, arch_name, cam_layer, output) = if onnx::is_onnx(&weights_path) {
            if let Some(arch) =
                arch_override.or(Some(card.architecture.as_str()).filter(|a| *a != "auto"))
            {
                bail!(
                    "{} is an ONNX model, which carries its own graph: architecture '{arch}' does not apply",
                    weights_path.display()
                );
            }
            let imported = onnx::open(&weights_path, card.input_size, device)?;
            let outputs = shape_outputs(&imported.graph);
            // A graph that ended in a sigmoid over several classes is multi-label.
            let output = card.output.or(match imported.dropped_output {
                Some("Sigmoid") if outputs > 1 => Some(Head::Multilabel),
                _ => None,
            });
            // The scores CAMs and filter objectives use are logits (pytorch-grad-cam's); a final
            // softmax or sigmoid is applied to predictions only, and said so.
            let left_off = imported
                .dropped_output
                .map(|f| format!(", final {f} applied to predictions only"))
                .unwrap_or_default();
            let name = format!(
                "onnx graph ({} nodes{left_off})",
                imported.graph.nodes().len() - 1
            );
            (imported.graph, name, None, output)
        } else {
            let (graph, arch) =
                Model::build_from_state_dict(card, &weights_path, arch_override, device, bare)?;
            (graph, arch.name(), arch.cam_layer(), card.output)
        };
        let outputs = shape_outputs(&graph);
        let head = match graph.classifier() {
            Some(_) => Some(Head::resolve(output, outputs)?),
            None => None,
        };
        let classes = head.map_or(0, |h| h.classes(outputs));
        let (_, height, width) = graph.input_size();
        let labels = match (
            &card.label_names,
            &card.labels,
            labels_beside(&weights_path),
        ) {
            (Some(names), _, _) if names.len() != classes => bail!(
                "config.json beside {} names {} classes but the model has {classes} outputs",
                weights_path.display(),
                names.len()
            ),
            (Some(names), _, _) => names.clone(),
            (None, Some(file), _) => read_labels(&base.join(file), classes)?,
            (None, None, Some(file)) => read_labels(&file, classes)?,
            (None, None, None) if classes == 1000 => {
                IMAGENET_LABELS.lines().map(str::to_string).collect()
            }
            (None, None, None) => (0..classes).map(|i| format!("class {i}")).collect(),
        };
        Ok(Model {
            name: card.name.clone().unwrap_or(name),
            arch: arch_name,
            cam_layer,
            graph,
            normalisation: Normalisation {
                height,
                width,
                ..card.normalisation()
            },
            labels,
            head,
            device: device.clone(),
            path: path.to_path_buf(),
        })
    }

    /// The graph of a state dict's architecture: detected, or named by `arch_override` or the
    /// model.toml; a bare checkpoint runs at its family's own input size (Inception v3: 299).
    fn build_from_state_dict(
        card: &ModelCard,
        weights_path: &Path,
        arch_override: Option<&str>,
        device: &Device,
        bare: bool,
    ) -> Result<(Graph, Arch)> {
        let dict = StateDict::load(weights_path, device)?;
        let dict = match &card.prefix {
            Some(prefix) => {
                let inner = dict.under(prefix);
                if inner.is_empty() {
                    bail!(
                        "{} has no tensors under the prefix '{prefix}'",
                        weights_path.display()
                    );
                }
                inner
            }
            None => dict.unwrapped(&|d| arch::detect(d).is_ok()),
        };
        let arch = match (
            arch_override.unwrap_or(&card.architecture),
            card.layers.is_empty(),
        ) {
            ("sequential", false) => Arch::sequential(card.layers.clone()),
            ("sequential", true) => bail!("model.toml says 'sequential' but lists no [[layers]]"),
            (name, _) => Arch::for_checkpoint(Some(name), &dict)?,
        };
        let mut weights = CheckpointWeights::new(dict, device.clone());
        let [h, w] = match (bare, arch.input_size()) {
            (true, Some(size)) => size,
            _ => card.input_size,
        };
        let graph = arch.build((3, h, w), &mut weights).with_context(|| {
            format!(
                "{} does not fit the {} layout",
                weights_path.display(),
                arch.name()
            )
        })?;
        Ok((graph, arch))
    }

    /// A torchvision architecture with seeded random weights and ImageNet settings, for
    /// benchmarks: `Model::random("resnet50", 224, 0, &Device::Cpu)`.
    pub fn random(arch_name: &str, size: usize, seed: u64, device: &Device) -> Result<Model> {
        let arch = Arch::standard(arch_name, 1000)?;
        let graph = arch.build(
            (3, size, size),
            &mut RandomWeights::new(seed, device.clone()),
        )?;
        let mut normalisation = ModelCard::for_checkpoint(Path::new(arch_name)).normalisation();
        (normalisation.height, normalisation.width) = (size, size);
        Ok(Model {
            name: arch_name.to_string(),
            arch: arch.name(),
            cam_layer: arch.cam_layer(),
            graph,
            normalisation,
            labels: IMAGENET_LABELS.lines().map(str::to_string).collect(),
            head: Some(Head::Softmax),
            device: device.clone(),
            path: PathBuf::from(arch_name),
        })
    }

    /// The head, or why a request that needs classes cannot be served.
    pub fn require_head(&self) -> Result<Head> {
        self.head.with_context(|| {
            format!(
                "{} has no classification head (a backbone saved without one): predictions and \
                 class activation maps need one; activations and filter patterns work",
                self.name
            )
        })
    }

    /// The class index for a label name or a number.
    pub fn class_index(&self, class: &str) -> Result<usize> {
        if let Ok(i) = class.parse::<usize>() {
            if i < self.labels.len() {
                return Ok(i);
            }
            bail!(
                "class {i} is out of range: the model has {} classes",
                self.labels.len()
            );
        }
        self.labels
            .iter()
            .position(|l| l.eq_ignore_ascii_case(class))
            .with_context(|| format!("unknown class '{class}'"))
    }
}

fn display_name(path: &Path) -> String {
    let p = if path.file_name().is_some_and(|f| f == "model.toml") {
        path.parent().unwrap_or(path)
    } else {
        path
    };
    p.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| p.display().to_string())
}

/// A labels file next to a checkpoint that names none: `<stem>.labels.txt`, else `labels.txt`.
fn labels_beside(checkpoint: &Path) -> Option<PathBuf> {
    let dir = checkpoint.parent().unwrap_or(Path::new("."));
    let stem = checkpoint.file_stem()?.to_string_lossy();
    [format!("{stem}.labels.txt"), "labels.txt".to_string()]
        .into_iter()
        .map(|name| dir.join(name))
        .find(|p| p.is_file())
}

fn read_labels(path: &Path, classes: usize) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read labels {}", path.display()))?;
    // A byte-order mark (Windows editors write one) is not part of the first label.
    let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
    let labels: Vec<String> = text
        .lines()
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty())
        .collect();
    if labels.len() != classes {
        bail!(
            "{} has {} labels but the model has {classes} outputs",
            path.display(),
            labels.len()
        );
    }
    Ok(labels)
}
