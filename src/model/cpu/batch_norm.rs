//! Eval-mode batch norm on the CPU, `x * scale + shift` per channel in one parallel pass (and
//! its backward, `grad * scale`); candle's broadcast ops take two single-threaded passes.

use candle_core::{Result, Tensor};
use rayon::prelude::*;

use super::with_data;

/// `x * scale + shift` with `scale` and `shift` of one value per channel of `x` (NCHW).
pub fn channel_affine(x: &Tensor, scale: &Tensor, shift: Option<&Tensor>) -> Result<Tensor> {
    let (_, c, h, w) = x.dims4()?;
    let scale = scale.flatten_all()?.to_vec1::<f32>()?;
    let shift = match shift {
        Some(s) => s.flatten_all()?.to_vec1::<f32>()?,
        None => vec![0.0; c],
    };
    if scale.len() != c || shift.len() != c {
        candle_core::bail!("batch norm of {} channels applied to {c}", scale.len());
    }
    let plane = h * w;
    let mut out = vec![0f32; x.elem_count()];
    with_data(x, |v| {
        out.par_chunks_mut(plane)
            .zip(v.par_chunks(plane))
            .enumerate()
            .for_each(|(i, (o, v))| {
                let (a, b) = (scale[i % c], shift[i % c]);
                for (o, &v) in o.iter_mut().zip(v) {
                    *o = v * a + b;
                }
            });
        Ok(())
    })?;
    Tensor::from_vec(out, x.dims(), x.device())
}
