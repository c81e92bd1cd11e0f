//! Elementwise maps on the CPU in one parallel pass (the activations of the newer families),
//! instead of a chain of candle's single-threaded ops with a buffer each.

use candle_core::{bail, Result, Tensor};
use rayon::prelude::*;

use super::with_data;

/// Values per parallel piece: small enough to spread, large enough to pay for the spread.
const PIECE: usize = 1 << 14;

/// `f` of every value of `x` (f32, on the CPU).
pub fn map(x: &Tensor, f: impl Fn(f32) -> f32 + Sync) -> Result<Tensor> {
    let mut out = vec![0f32; x.elem_count()];
    with_data(x, |v| {
        out.par_chunks_mut(PIECE)
            .zip(v.par_chunks(PIECE))
            .for_each(|(o, v)| {
                for (o, v) in o.iter_mut().zip(v) {
                    *o = f(*v);
                }
            });
        Ok(())
    })?;
    Tensor::from_vec(out, x.dims(), x.device())
}

/// `f(x, g)` of the paired values of `x` and `g`, which have one shape.
pub fn zip_map(x: &Tensor, g: &Tensor, f: impl Fn(f32, f32) -> f32 + Sync) -> Result<Tensor> {
    if x.dims() != g.dims() {
        bail!("shapes {:?} and {:?} differ", x.dims(), g.dims());
    }
    let mut out = vec![0f32; x.elem_count()];
    with_data(x, |xv| {
        with_data(g, |gv| {
            out.par_chunks_mut(PIECE)
                .zip(xv.par_chunks(PIECE).zip(gv.par_chunks(PIECE)))
                .for_each(|(o, (xv, gv))| {
                    for ((o, x), g) in o.iter_mut().zip(xv).zip(gv) {
                        *o = f(*x, *g);
                    }
                });
            Ok(())
        })
    })?;
    Tensor::from_vec(out, x.dims(), x.device())
}
