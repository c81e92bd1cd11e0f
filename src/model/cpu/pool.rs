//! Max pooling forward on the CPU: one pass over each input plane, planes in parallel.

use candle_core::{Result, Tensor};
use rayon::prelude::*;

use super::with_data;
use crate::model::pool::PoolGeometry;

/// Max pooling of `x` (NCHW, f32, on the CPU) to an `(oh, ow)` output; windows are clipped to
/// the input, so padding never wins (PyTorch pads with -inf).
pub fn max_pool(x: &Tensor, g: &PoolGeometry, (oh, ow): (usize, usize)) -> Result<Tensor> {
    let (n, c, h, w) = x.dims4()?;
    let mut out = vec![0f32; n * c * oh * ow];
    with_data(x, |input| {
        out.par_chunks_mut(oh * ow)
            .zip(input.par_chunks(h * w))
            .for_each(|(dst, plane)| {
                let window = |o: usize, size: usize| {
                    let start = (o * g.stride).saturating_sub(g.padding);
                    let end = (o * g.stride + g.kernel)
                        .saturating_sub(g.padding)
                        .min(size);
                    start..end
                };
                for oy in 0..oh {
                    let rows = window(oy, h);
                    for ox in 0..ow {
                        let cols = window(ox, w);
                        let mut m = f32::NEG_INFINITY;
                        for y in rows.clone() {
                            for &v in &plane[y * w + cols.start..y * w + cols.end] {
                                // NaN wins, as in PyTorch.
                                if v > m || v.is_nan() {
                                    m = v;
                                }
                            }
                        }
                        dst[oy * ow + ox] = m;
                    }
                }
            });
        Ok(())
    })?;
    Tensor::from_vec(out, (n, c, oh, ow), x.device())
}
