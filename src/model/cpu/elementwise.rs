//! Elementwise maps on the CPU in one parallel, vectorised pass (the activations of the newer
//! families), instead of a chain of candle's single-threaded ops with a buffer each. The
//! function passed in is vectorised with the loop only when it is inlined into it: pass
//! `#[inline(always)]` functions, not closures around larger code.

use candle_core::{bail, Result, Tensor};
use pulp::{Simd, WithSimd};
use rayon::prelude::*;

use super::{vectorized, with_data};

/// Values per parallel piece: small enough to spread, large enough to pay for the spread.
const PIECE: usize = 1 << 14;

/// `f` of every value of `x` (f32, on the CPU).
pub fn map(x: &Tensor, f: impl Fn(f32) -> f32 + Sync) -> Result<Tensor> {
    let mut out = vec![0f32; x.elem_count()];
    with_data(x, |v| {
        out.par_chunks_mut(PIECE)
            .zip(v.par_chunks(PIECE))
            .for_each(|(out, x)| vectorized(Map { out, x, f: &f }));
        Ok(())
    })?;
    Tensor::from_vec(out, x.dims(), x.device())
}

/// The chain rule's step through an elementwise function: `g * slope(x)` of the paired values
/// of `x` and the gradient `g`, which have one shape.
pub fn chain(x: &Tensor, g: &Tensor, slope: impl Fn(f32) -> f32 + Sync) -> Result<Tensor> {
    if x.dims() != g.dims() {
        bail!("shapes {:?} and {:?} differ", x.dims(), g.dims());
    }
    let mut out = vec![0f32; x.elem_count()];
    with_data(x, |xv| {
        with_data(g, |gv| {
            out.par_chunks_mut(PIECE)
                .zip(xv.par_chunks(PIECE).zip(gv.par_chunks(PIECE)))
                .for_each(|(out, (x, g))| {
                    vectorized(Chain {
                        out,
                        x,
                        g,
                        slope: &slope,
                    })
                });
            Ok(())
        })
    })?;
    Tensor::from_vec(out, x.dims(), x.device())
}

/// One piece of [`map`].
struct Map<'a, F> {
    out: &'a mut [f32],
    x: &'a [f32],
    f: &'a F,
}

impl<F: Fn(f32) -> f32> WithSimd for Map<'_, F> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: Simd>(self, _: S) {
        for (o, v) in self.out.iter_mut().zip(self.x) {
            *o = (self.f)(*v);
        }
    }
}

/// One piece of [`chain`].
struct Chain<'a, F> {
    out: &'a mut [f32],
    x: &'a [f32],
    g: &'a [f32],
    slope: &'a F,
}

impl<F: Fn(f32) -> f32> WithSimd for Chain<'_, F> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: Simd>(self, _: S) {
        for ((o, x), g) in self.out.iter_mut().zip(self.x).zip(self.g) {
            *o = g * (self.slope)(*x);
        }
    }
}
