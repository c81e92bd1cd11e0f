//! ONNX tensors (initializers and `Constant` values) as plain data: floats for weights, integers
//! for the shape arithmetic exporters emit. Weights may live in external data files next to the
//! model (models over 2 GB); a location that leaves the model's folder is refused.

use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use candle_core::{DType, Device, Tensor};

use super::proto::tensor_proto::{DataLocation, DataType};
use super::proto::TensorProto;

/// The values of a constant tensor.
#[derive(Debug, Clone, PartialEq)]
pub enum Data {
    Float(Vec<f32>),
    Int(Vec<i64>),
}

/// A constant tensor: its dimensions and values.
#[derive(Debug, Clone, PartialEq)]
pub struct Constant {
    pub dims: Vec<usize>,
    pub data: Data,
}

impl Constant {
    pub fn ints(dims: Vec<usize>, values: Vec<i64>) -> Constant {
        Constant {
            dims,
            data: Data::Int(values),
        }
    }

    pub fn floats(dims: Vec<usize>, values: Vec<f32>) -> Constant {
        Constant {
            dims,
            data: Data::Float(values),
        }
    }

    pub fn len(&self) -> usize {
        self.dims.iter().product()
    }

    /// The values as integers (shapes, axes, indices).
    pub fn as_ints(&self) -> Option<&[i64]> {
        match &self.data {
            Data::Int(v) => Some(v),
            Data::Float(_) => None,
        }
    }

    /// The values as floats, integers converted (`Clip`'s bounds).
    pub fn to_floats(&self) -> Vec<f32> {
        match &self.data {
            Data::Float(v) => v.clone(),
            Data::Int(v) => v.iter().map(|&x| x as f32).collect(),
        }
    }

    /// The values as a tensor of `shape` on `device`, when they are floats.
    pub fn tensor(&self, shape: &[usize], device: &Device) -> Result<Tensor> {
        match &self.data {
            Data::Float(v) => Ok(Tensor::from_vec(v.clone(), shape, device)?),
            Data::Int(_) => bail!("holds integers where weights were expected"),
        }
    }
}

/// Reads a tensor, from its own fields or from the external file it names (relative to
/// `folder`, the model's folder).
pub fn read(t: &TensorProto, folder: &Path) -> Result<Constant> {
    let name = t.name.as_deref().unwrap_or("(unnamed)");
    read_inner(t, folder).with_context(|| format!("tensor '{name}'"))
}

fn read_inner(t: &TensorProto, folder: &Path) -> Result<Constant> {
    let dims = t
        .dims
        .iter()
        .map(|&d| usize::try_from(d).map_err(|_| anyhow!("has a negative dimension {d}")))
        .collect::<Result<Vec<_>>>()?;
    let count = dims
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or_else(|| anyhow!("has dimensions {dims:?} too large to hold"))?;
    let dtype = DataType::try_from(t.data_type.unwrap_or(0))
        .map_err(|_| anyhow!("has an unknown data type {}", t.data_type.unwrap_or(0)))?;
    let external = t.data_location == Some(DataLocation::External as i32);
    // The bytes are read where they are (in the decoded model, or the external file's buffer).
    let external_bytes = if external {
        Some(read_external(t, folder)?)
    } else {
        None
    };
    let raw: Option<&[u8]> = external_bytes.as_deref().or(t.raw_data.as_deref());
    let data = match (dtype, raw) {
        (DataType::Float, None) => Data::Float(t.float_data.clone()),
        (DataType::Double, None) => Data::Float(t.double_data.iter().map(|&v| v as f32).collect()),
        (DataType::Int64, None) => Data::Int(t.int64_data.clone()),
        (DataType::Int32, None) => Data::Int(t.int32_data.iter().map(|&v| v as i64).collect()),
        (DataType::Float16 | DataType::Bfloat16, None) => {
            let bytes: Vec<u8> = t
                .int32_data
                .iter()
                .flat_map(|&v| (v as u16).to_le_bytes())
                .collect();
            Data::Float(half_to_f32(&bytes, dtype, count)?)
        }
        (DataType::Float, Some(b)) => Data::Float(le_values(b, count, f32::from_le_bytes)?),
        (DataType::Double, Some(b)) => Data::Float(
            le_values(b, count, f64::from_le_bytes)?
                .into_iter()
                .map(|v| v as f32)
                .collect(),
        ),
        (DataType::Int64, Some(b)) => Data::Int(le_values(b, count, i64::from_le_bytes)?),
        (DataType::Int32, Some(b)) => Data::Int(
            le_values(b, count, i32::from_le_bytes)?
                .into_iter()
                .map(i64::from)
                .collect(),
        ),
        (DataType::Float16 | DataType::Bfloat16, Some(b)) => {
            Data::Float(half_to_f32(b, dtype, count)?)
        }
        (other, _) => bail!(
            "has data type {}, which convscope does not read",
            other.as_str_name()
        ),
    };
    let held = match &data {
        Data::Float(v) => v.len(),
        Data::Int(v) => v.len(),
    };
    if held != count {
        bail!("holds {held} values for dimensions {dims:?}");
    }
    Ok(Constant { dims, data })
}

fn le_values<T, const N: usize>(bytes: &[u8], count: usize, f: fn([u8; N]) -> T) -> Result<Vec<T>> {
    if bytes.len() != count * N {
        bail!(
            "holds {} bytes for {count} values of {N} bytes",
            bytes.len()
        );
    }
    Ok(bytes
        .chunks_exact(N)
        .map(|c| f(c.try_into().expect("chunks of N bytes")))
        .collect())
}

fn half_to_f32(bytes: &[u8], dtype: DataType, count: usize) -> Result<Vec<f32>> {
    if bytes.len() != count * 2 {
        bail!(
            "holds {} bytes for {count} half-precision values",
            bytes.len()
        );
    }
    let dt = match dtype {
        DataType::Bfloat16 => DType::BF16,
        _ => DType::F16,
    };
    let t = Tensor::from_raw_buffer(bytes, dt, &[count], &Device::Cpu)?;
    Ok(t.to_dtype(DType::F32)?.to_vec1()?)
}

/// The bytes an external tensor names: `location` inside the model's folder, from `offset`,
/// `length` bytes (the rest of the file when absent).
fn read_external(t: &TensorProto, folder: &Path) -> Result<Vec<u8>> {
    let field = |key: &str| {
        t.external_data
            .iter()
            .find(|e| e.key.as_deref() == Some(key))
            .and_then(|e| e.value.clone())
    };
    let location = field("location").ok_or_else(|| anyhow!("is external without a location"))?;
    let number = |key: &str| -> Result<Option<u64>> {
        field(key)
            .map(|v| {
                v.parse::<u64>()
                    .map_err(|_| anyhow!("has external {key} '{v}', not a number"))
            })
            .transpose()
    };
    let (offset, length) = (number("offset")?.unwrap_or(0), number("length")?);
    let root = folder
        .canonicalize()
        .with_context(|| format!("cannot read the folder {}", folder.display()))?;
    let file = root.join(&location);
    let file = file
        .canonicalize()
        .with_context(|| format!("names external data {location}, which cannot be read"))?;
    if !file.starts_with(&root) {
        bail!("names external data {location}, outside the model's folder");
    }
    let mut f = std::fs::File::open(&file)
        .with_context(|| format!("cannot read external data {}", file.display()))?;
    let size = f.metadata()?.len();
    let length = length.unwrap_or(size.saturating_sub(offset));
    if offset.checked_add(length).is_none_or(|end| end > size) {
        bail!(
            "reads bytes {offset}..{} of {location}, which has {size}",
            offset.saturating_add(length)
        );
    }
    crate::model::memory::ensure_fits(length, || format!("external data {location}"))?;
    f.seek(SeekFrom::Start(offset))?;
    let mut buf = vec![0u8; length as usize];
    f.read_exact(&mut buf)?;
    Ok(buf)
}
