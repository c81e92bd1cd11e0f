//! PyTorch's zip checkpoints (`torch.save` since 1.6): the archive is opened once, its pickle
//! (`<archive>/data.pkl`) parsed with candle's unpickler (protocols 4 and 5 rewritten as 2 first), and every tensor read from its storage
//! entry in the same archive, whatever its strides (channels_last weights, transposed views).
//!
//! The archive is read at offset 0, as `torch.save` writes it. The zip crate's default guesses
//! an offset from where the central directory seems to start and, because it leaves the Zip64
//! records out of that guess, lands on the second directory entry whenever the first one is 76
//! bytes long: every checkpoint saved under a 21-character file stem (`<stem>/data.pkl` is the
//! first entry) failed with "Invalid Central Directory header".

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;

use candle_core::pickle::{Object, Stack, TensorInfo};
use candle_core::{Device, Result, Tensor};
use zip::read::{ArchiveOffset, Config};
use zip::ZipArchive;

/// The archive of a checkpoint, read from offset 0.
pub fn open(path: &Path) -> Result<ZipArchive<BufReader<File>>> {
    let config = Config {
        archive_offset: ArchiveOffset::Known(0),
    };
    Ok(ZipArchive::with_config(
        config,
        BufReader::new(File::open(path)?),
    )?)
}

/// The tensors of the checkpoint at `path`: those of its top-level dict, or with `key` those of
/// the dict under that key (a training checkpoint's `state_dict`).
pub fn read(path: &Path, key: Option<&str>) -> Result<Vec<(String, Tensor)>> {
    let mut archive = open(path)?;
    let infos = tensor_infos(&mut archive, key)?;
    infos
        .into_iter()
        .map(|info| Ok((info.name.clone(), read_tensor(&mut archive, &info)?)))
        .collect()
}

/// Where each tensor lies, from the archive's pickle.
fn tensor_infos(
    archive: &mut ZipArchive<BufReader<File>>,
    key: Option<&str>,
) -> Result<Vec<TensorInfo>> {
    let pickle = archive
        .file_names()
        .filter_map(|name| name.ok())
        .find(|name| name.ends_with("data.pkl"))
        .map(|name| name.into_owned())
        .ok_or_else(|| candle_core::Error::Msg("the archive has no data.pkl".into()))?;
    if archive
        .file_names()
        .filter_map(|name| name.ok())
        .any(|name| name.ends_with("constants.pkl") || name.contains("/code/"))
    {
        candle_core::bail!(
            "it is a TorchScript file (torch.jit.save), not a state dict; in Python, save \
             torch.jit.load(path).state_dict() with torch.save or safetensors"
        );
    }
    let dir = std::path::PathBuf::from(pickle.strip_suffix(".pkl").unwrap_or(&pickle));
    let mut bytes = Vec::new();
    archive.by_name(&pickle)?.read_to_end(&mut bytes)?;
    let bytes = super::pickle_protocol::as_protocol_2(&bytes)
        .map_err(|e| candle_core::Error::Msg(format!("its pickle cannot be read: {e:#}")))?;
    let mut stack = Stack::empty();
    stack.read_loop(&mut bytes.as_slice())?;
    let mut object = stack.finalize()?;
    // A TorchScript-style wrapper around the dict.
    if let Object::Build { callable, args } = object {
        object = match *callable {
            Object::Reduce { callable, .. }
                if matches!(&*callable, Object::Class { module_name, class_name }
                    if module_name == "__torch__" && class_name == "Module") =>
            {
                *args
            }
            other => Object::Build {
                callable: Box::new(other),
                args,
            },
        };
    }
    if let Some(class) = pickled_class(&object) {
        candle_core::bail!(
            "it holds a whole pickled {class} (torch.save(model)), not a state dict; save \
             model.state_dict() instead"
        );
    }
    if let Some(key) = key {
        let Object::Dict(entries) = object else {
            return Ok(Vec::new());
        };
        object = entries
            .into_iter()
            .find(|(k, _)| *k == Object::Unicode(key.to_string()))
            .map(|(_, v)| v)
            .ok_or_else(|| candle_core::Error::Msg(format!("key {key} not found")))?;
    }
    let Object::Dict(entries) = object else {
        return Ok(Vec::new());
    };
    let mut infos = Vec::new();
    for (name, value) in entries {
        if let Some(info) = value.into_tensor_info(name, &dir)? {
            infos.push(info);
        }
    }
    Ok(infos)
}

/// The class of a pickled object that is not a dict (a whole module saved with
/// `torch.save(model)`), as `module.Class`.
fn pickled_class(object: &Object) -> Option<String> {
    let class: &Object = match object {
        Object::Build { callable, .. } => match callable.as_ref() {
            Object::Reduce { callable, .. } => callable.as_ref(),
            other => other,
        },
        Object::Reduce { callable, .. } => callable.as_ref(),
        _ => return None,
    };
    match class {
        Object::Class {
            module_name,
            class_name,
        } if !class_name.contains("Dict") => Some(format!("{module_name}.{class_name}")),
        _ => None,
    }
}

/// One tensor, contiguous, in its stored dtype: its storage read whole, then its elements taken
/// by their strides when they are not laid out in order.
fn read_tensor(archive: &mut ZipArchive<BufReader<File>>, info: &TensorInfo) -> Result<Tensor> {
    let dtype = info.dtype;
    let storage = {
        let mut entry = archive.by_name(&info.path)?;
        let expected = info.storage_size * dtype.size_in_bytes();
        if entry.size() < expected as u64 {
            candle_core::bail!(
                "tensor {} needs {expected} bytes of storage, its entry holds {}",
                info.name,
                entry.size()
            );
        }
        let mut bytes = vec![0u8; expected];
        entry.read_exact(&mut bytes)?;
        Tensor::from_raw_buffer(&bytes, dtype, &[info.storage_size], &Device::Cpu)?
    };
    let layout = &info.layout;
    let shape = layout.shape().clone();
    let offset = layout.start_offset() / dtype.size_in_bytes();
    if layout.is_contiguous() {
        return storage
            .narrow(0, offset, shape.elem_count())?
            .reshape(shape);
    }
    // Each element's place in the storage, row-major over the shape.
    let beyond =
        || candle_core::Error::Msg(format!("tensor {} reaches past its storage", info.name));
    let mut index = vec![offset; shape.elem_count()];
    let mut step = 1;
    for (&size, &stride) in shape.dims().iter().zip(layout.stride()).rev() {
        for (i, v) in index.iter_mut().enumerate() {
            *v = (i / step % size)
                .checked_mul(stride)
                .and_then(|d| v.checked_add(d))
                .ok_or_else(beyond)?;
        }
        step *= size;
    }
    if index.iter().any(|&i| i >= info.storage_size) || info.storage_size > u32::MAX as usize {
        return Err(beyond());
    }
    let index: Vec<u32> = index.into_iter().map(|i| i as u32).collect();
    let index = Tensor::from_vec(index, shape.elem_count(), &Device::Cpu)?;
    storage.index_select(&index, 0)?.reshape(shape)
}
