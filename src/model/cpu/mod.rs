//! The engine's own CPU kernels, for the ops where candle's CPU path is slow: convolution
//! (im2col into `gemm`) and max pooling. Other devices use candle's ops.

pub mod conv;
pub mod pool;

use candle_core::{bail, CpuStorage, DType, Device, Result, Storage, Tensor};

/// Whether `x` is an `f32` tensor on the CPU, the kernels' one case.
pub fn handles(x: &Tensor) -> bool {
    matches!(x.device(), Device::Cpu) && x.dtype() == DType::F32
}

/// The contiguous `f32` data of a CPU tensor.
pub fn with_data<R>(t: &Tensor, f: impl FnOnce(&[f32]) -> Result<R>) -> Result<R> {
    let t = t.contiguous()?;
    let (storage, layout) = t.storage_and_layout();
    match &*storage {
        Storage::Cpu(CpuStorage::F32(v)) => {
            let start = layout.start_offset();
            f(&v[start..start + layout.shape().elem_count()])
        }
        _ => bail!("the CPU convolution needs an f32 tensor on the CPU"),
    }
}
