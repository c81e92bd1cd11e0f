//! Checkpoints to named `f32` tensors: safetensors and PyTorch zip `.pt`/`.pth` state dicts,
//! including ones nested under `state_dict`/`model` and ones saved from `DataParallel`.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{bail, Context, Result};
use candle_core::{DType, Device, Tensor};

/// A state dict: parameter name to tensor, on the target device, in `f32`.
#[derive(Debug, Clone, Default)]
pub struct StateDict {
    tensors: HashMap<String, Tensor>,
}

/// Keys under which training scripts commonly nest the state dict.
const NESTED_KEYS: [&str; 3] = ["state_dict", "model", "model_state_dict"];

impl StateDict {
    pub fn from_tensors(tensors: HashMap<String, Tensor>) -> Self {
        StateDict { tensors }
    }

    /// Reads a checkpoint file, choosing the format from its first bytes.
    pub fn load(path: &Path, device: &Device) -> Result<Self> {
        let meta =
            std::fs::metadata(path).with_context(|| format!("cannot read {}", path.display()))?;
        if meta.is_dir() {
            bail!("{} is a folder without a model.toml", path.display());
        }
        if meta.len() == 0 {
            bail!("{} is empty", path.display());
        }
        let mut magic = [0u8; 4];
        {
            use std::io::Read;
            let mut f = std::fs::File::open(path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            let n = f.read(&mut magic)?;
            if n < 4 {
                bail!("{} is too short to be a checkpoint", path.display());
            }
        }
        let raw = if &magic == b"PK\x03\x04" {
            load_pth(path)?
        } else if is_pickle_without_zip(&magic) {
            bail!(
                "{} is a legacy (pre-1.6) PyTorch file; re-save it with torch.save(..., _use_new_zipfile_serialization=True) or as .safetensors",
                path.display()
            )
        } else {
            candle_core::safetensors::load(path, &Device::Cpu)
                .map_err(|e| {
                    anyhow::anyhow!(
                        "{} is not a readable safetensors or PyTorch checkpoint ({})",
                        path.display(),
                        first_line(&e.to_string())
                    )
                })?
                .into_iter()
                .collect()
        };
        if raw.is_empty() {
            bail!("{} holds no tensors", path.display());
        }
        let mut tensors = HashMap::with_capacity(raw.len());
        for (name, t) in raw {
            let name = name.strip_prefix("module.").unwrap_or(&name).to_string();
            let t = t
                .to_dtype(DType::F32)
                .and_then(|t| t.to_device(device))
                .with_context(|| format!("cannot convert tensor {name}"))?;
            tensors.insert(name, t);
        }
        Ok(StateDict { tensors })
    }

    pub fn get(&self, name: &str) -> Option<&Tensor> {
        self.tensors.get(name)
    }

    pub fn shape(&self, name: &str) -> Option<&[usize]> {
        self.tensors.get(name).map(|t| t.dims())
    }

    pub fn contains(&self, name: &str) -> bool {
        self.tensors.contains_key(name)
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.tensors.keys().map(|k| k.as_str())
    }

    pub fn len(&self) -> usize {
        self.tensors.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tensors.is_empty()
    }

    /// Writes the state dict as safetensors.
    pub fn save(&self, path: &Path) -> Result<()> {
        candle_core::safetensors::save(&self.tensors, path)
            .with_context(|| format!("cannot write {}", path.display()))
    }
}

fn is_pickle_without_zip(magic: &[u8; 4]) -> bool {
    magic[0] == 0x80 && (2..=5).contains(&magic[1])
}

pub(crate) fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or("").trim()
}

/// Loads a zip-format PyTorch checkpoint: the top-level dict, or the first nested state dict.
fn load_pth(path: &Path) -> Result<Vec<(String, Tensor)>> {
    let read = |key: Option<&str>| {
        candle_core::pickle::read_all_with_key(path, key).map_err(|e| {
            anyhow::anyhow!(
                "{} is not a readable PyTorch checkpoint ({})",
                path.display(),
                first_line(&e.to_string())
            )
        })
    };
    let top = read(None)?;
    if !top.is_empty() {
        return Ok(top);
    }
    for key in NESTED_KEYS {
        if let Ok(nested) = read(Some(key)) {
            if !nested.is_empty() {
                return Ok(nested);
            }
        }
    }
    bail!(
        "{} holds no tensors at the top level or under {}",
        path.display(),
        NESTED_KEYS.join("/")
    )
}
