//! Checkpoints to named `f32` tensors: safetensors and PyTorch zip `.pt`/`.pth` state dicts,
//! including ones nested under `state_dict`/`model`, and the model's own tensors found inside a
//! wrapper's names (`module.`, `model.`, `_orig_mod.`, ...).

use std::collections::HashMap;
use std::path::Path;

use anyhow::{bail, Context, Result};
use candle_core::{DType, Device, Tensor};

/// A state dict: parameter name to tensor, on the target device, in `f32`.
#[derive(Debug, Clone, Default)]
pub struct StateDict {
    tensors: HashMap<String, Tensor>,
}

/// Prefixes that wrappers put before a model's own names: DataParallel (`module.`), PyTorch
/// Lightning (`model.`), `torch.compile` (`_orig_mod.`), and backbone/encoder wrappers.
pub const WRAPPER_PREFIXES: [&str; 5] =
    ["module.", "model.", "_orig_mod.", "backbone.", "encoder."];

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
            bail!("{} is a folder, not a checkpoint file", path.display());
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
        check_memory(path, &magic)?;
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
            let t = t
                .to_dtype(DType::F32)
                .and_then(|t| t.to_device(device))
                .with_context(|| format!("cannot convert tensor {name}"))?;
            tensors.insert(name, t);
        }
        Ok(StateDict { tensors })
    }

    /// The tensors under `prefix` (`"model."`), with the prefix taken off their names.
    pub fn under(&self, prefix: &str) -> StateDict {
        StateDict {
            tensors: self
                .tensors
                .iter()
                .filter_map(|(k, t)| Some((k.strip_prefix(prefix)?.to_string(), t.clone())))
                .collect(),
        }
    }

    /// The model's own tensors inside a wrapper's: the dict itself when `fits` it, else the
    /// first dict under [`WRAPPER_PREFIXES`] (nested ones too, `model._orig_mod.`) that `fits`;
    /// when none does, the dict under the prefixes that every key shares; else the dict itself.
    pub fn unwrapped(&self, fits: &dyn Fn(&StateDict) -> bool) -> StateDict {
        fn search(
            d: &StateDict,
            fits: &dyn Fn(&StateDict) -> bool,
            depth: usize,
        ) -> Option<StateDict> {
            if fits(d) {
                return Some(d.clone());
            }
            if depth == 0 {
                return None;
            }
            WRAPPER_PREFIXES.iter().find_map(|p| {
                let inner = d.under(p);
                (!inner.is_empty())
                    .then(|| search(&inner, fits, depth - 1))
                    .flatten()
            })
        }
        if let Some(found) = search(self, fits, 3) {
            return found;
        }
        let mut d = self.clone();
        while let Some(p) = WRAPPER_PREFIXES
            .iter()
            .find(|p| !d.is_empty() && d.names().all(|n| n.starts_with(*p)))
        {
            d = d.under(p);
        }
        d
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

/// Refuses a checkpoint whose tensors, as its header declares them, need more memory than is
/// available, before anything is allocated.
fn check_memory(path: &Path, magic: &[u8; 4]) -> Result<()> {
    let declared = if magic == b"PK\x03\x04" {
        zip_entries_bytes(path)
    } else {
        safetensors_bytes(path)
    };
    let (Some(declared), Some(free)) = (declared, super::memory::available()) else {
        return Ok(());
    };
    if declared > free {
        bail!(
            "{} declares {:.1} GiB of tensors, more than the {:.1} GiB of memory available",
            path.display(),
            declared as f64 / (1u64 << 30) as f64,
            free as f64 / (1u64 << 30) as f64
        );
    }
    Ok(())
}

/// Total uncompressed size of a zip's entries (what reading them all allocates).
fn zip_entries_bytes(path: &Path) -> Option<u64> {
    let mut archive = super::pth::open(path).ok()?;
    let mut total = 0u64;
    for i in 0..archive.len() {
        total = total.saturating_add(archive.by_index_raw(i).ok()?.size());
    }
    Some(total)
}

/// Bytes of a safetensors file's tensors as f32, from its JSON header.
fn safetensors_bytes(path: &Path) -> Option<u64> {
    use std::io::Read;
    let mut f = std::fs::File::open(path).ok()?;
    let mut len = [0u8; 8];
    f.read_exact(&mut len).ok()?;
    let len = u64::from_le_bytes(len);
    if len > 100 << 20 {
        return None; // Not a header the safetensors reader accepts; it says so itself.
    }
    let mut header = vec![0u8; len as usize];
    f.read_exact(&mut header).ok()?;
    let header: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&header).ok()?;
    let mut total = 0u64;
    for (name, info) in &header {
        if name == "__metadata__" {
            continue;
        }
        let dims: Vec<u64> = info["shape"]
            .as_array()?
            .iter()
            .map(|d| d.as_u64())
            .collect::<Option<_>>()?;
        let bytes = dims
            .iter()
            .try_fold(4u64, |acc, &d| acc.checked_mul(d))
            .unwrap_or(u64::MAX);
        total = total.saturating_add(bytes);
    }
    Some(total)
}

/// Memory available to this process, from /proc/meminfo (Linux); `None` elsewhere.
fn is_pickle_without_zip(magic: &[u8; 4]) -> bool {
    magic[0] == 0x80 && (2..=5).contains(&magic[1])
}

pub(crate) fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or("").trim()
}

/// Runs `f`, turning a panic into `None` without a message: candle's pickle reader can panic
/// on malformed input (an integer opcode longer than 8 bytes, found by fuzzing).
fn without_panics<T>(f: impl FnOnce() -> T + std::panic::UnwindSafe) -> Option<T> {
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let result = std::panic::catch_unwind(f);
    std::panic::set_hook(hook);
    result.ok()
}

/// Loads a zip-format PyTorch checkpoint: the top-level dict, or the first nested state dict.
fn load_pth(path: &Path) -> Result<Vec<(String, Tensor)>> {
    let read = |key: Option<&str>| {
        let unreadable = |why: &str| {
            anyhow::anyhow!(
                "{} is not a readable PyTorch checkpoint ({})",
                path.display(),
                first_line(why)
            )
        };
        match without_panics(|| super::pth::read(path, key)) {
            Some(Ok(tensors)) => Ok(tensors),
            Some(Err(e)) => Err(unreadable(&e.to_string())),
            None => Err(unreadable("its pickle is malformed")),
        }
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
