//! ReLU on the CPU, forward and backward, in parallel chunks (candle's element-wise ops run on
//! one thread, and its backward mask takes three passes).

use candle_core::{Result, Tensor};
use rayon::prelude::*;

use super::with_data;

/// Elements per parallel task.
const CHUNK: usize = 1 << 16;

/// `max(x, 0)`, NaN kept as in PyTorch.
pub fn relu(x: &Tensor) -> Result<Tensor> {
    let mut out = vec![0f32; x.elem_count()];
    with_data(x, |v| {
        out.par_chunks_mut(CHUNK)
            .zip(v.par_chunks(CHUNK))
            .for_each(|(o, v)| {
                for (o, &v) in o.iter_mut().zip(v) {
                    *o = if v < 0.0 { 0.0 } else { v };
                }
            });
        Ok(())
    })?;
    Tensor::from_vec(out, x.dims(), x.device())
}

/// The gradient through a ReLU whose output was `y`: `grad` where `y > 0`, zero elsewhere.
pub fn relu_backward(y: &Tensor, grad: &Tensor) -> Result<Tensor> {
    let mut out = vec![0f32; grad.elem_count()];
    with_data(y, |y| {
        with_data(grad, |g| {
            out.par_chunks_mut(CHUNK)
                .zip(y.par_chunks(CHUNK).zip(g.par_chunks(CHUNK)))
                .for_each(|(o, (y, g))| {
                    for ((o, &y), &g) in o.iter_mut().zip(y).zip(g) {
                        *o = if y > 0.0 { g } else { 0.0 };
                    }
                });
            Ok(())
        })
    })?;
    Tensor::from_vec(out, grad.dims(), grad.device())
}
