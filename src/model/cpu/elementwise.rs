//! Elementwise maps on the CPU in one parallel, vectorised pass (the activations of the newer
//! families), instead of a chain of candle's single-threaded ops with a buffer each. The
//! function passed in is vectorised with the loop only when it is inlined into it: pass
//! `#[inline(always)]` functions, not closures around larger code.

use std::mem::MaybeUninit;

use candle_core::{bail, Result, Tensor};
use pulp::{Simd, WithSimd};
use rayon::prelude::*;

use super::{vectorized, with_data};

/// Values per parallel piece: small enough to spread, large enough to pay for the spread.
const PIECE: usize = 1 << 14;

/// Pieces one task takes at least: a smaller tensor is mapped on the calling thread, since
/// waking the others costs more than the work.
const MIN_PIECES: usize = super::MIN_TASK_VALUES / PIECE;

/// `f` of every value of `x` (f32, on the CPU).
pub fn map(x: &Tensor, f: impl Fn(f32) -> f32 + Sync) -> Result<Tensor> {
    let out = with_data(x, |v| {
        Ok(written(v.len(), |out| {
            out.par_chunks_mut(PIECE)
                .zip(v.par_chunks(PIECE))
                .with_min_len(MIN_PIECES)
                .for_each(|(out, x)| vectorized(Map { out, x, f: &f }))
        }))
    })?;
    Tensor::from_vec(out, x.dims(), x.device())
}

/// The chain rule's step through an elementwise function: `g * slope(x)` of the paired values
/// of `x` and the gradient `g`, which have one shape.
pub fn chain(x: &Tensor, g: &Tensor, slope: impl Fn(f32) -> f32 + Sync) -> Result<Tensor> {
    zip_map(x, g, |x, g| g * slope(x))
}

/// `max(x, 0)`, NaN kept as in PyTorch.
pub fn relu(x: &Tensor) -> Result<Tensor> {
    map(x, |v| if v < 0.0 { 0.0 } else { v })
}

/// The gradient through a ReLU whose output was `y`: `grad` where `y > 0`, zero elsewhere.
pub fn relu_backward(y: &Tensor, grad: &Tensor) -> Result<Tensor> {
    zip_map(y, grad, |y, g| if y > 0.0 { g } else { 0.0 })
}

/// `a + b` of two tensors of one shape.
pub fn add(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    zip_map(a, b, |a, b| a + b)
}

/// `f(x, y)` of the paired values of `x` and `y`, which have one shape.
fn zip_map(x: &Tensor, y: &Tensor, f: impl Fn(f32, f32) -> f32 + Sync) -> Result<Tensor> {
    if x.dims() != y.dims() {
        bail!("shapes {:?} and {:?} differ", x.dims(), y.dims());
    }
    let out = with_data(x, |xv| {
        with_data(y, |yv| {
            Ok(written(xv.len(), |out| {
                out.par_chunks_mut(PIECE)
                    .zip(xv.par_chunks(PIECE).zip(yv.par_chunks(PIECE)))
                    .with_min_len(MIN_PIECES)
                    .for_each(|(out, (x, y))| vectorized(ZipMap { out, x, y, f: &f }))
            }))
        })
    })?;
    Tensor::from_vec(out, x.dims(), x.device())
}

/// A buffer of `len` values that `write` sets, every one (not zeroed first: a pass saved).
fn written(len: usize, write: impl FnOnce(&mut [MaybeUninit<f32>])) -> Vec<f32> {
    let mut out = Vec::with_capacity(len);
    write(&mut out.spare_capacity_mut()[..len]);
    // SAFETY: `write` set every value (each kernel below writes its whole piece).
    unsafe { out.set_len(len) };
    out
}

/// One piece of [`map`].
struct Map<'a, F> {
    out: &'a mut [MaybeUninit<f32>],
    x: &'a [f32],
    f: &'a F,
}

impl<F: Fn(f32) -> f32> WithSimd for Map<'_, F> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: Simd>(self, _: S) {
        for (o, v) in self.out.iter_mut().zip(self.x) {
            o.write((self.f)(*v));
        }
    }
}

/// One piece of [`zip_map`].
struct ZipMap<'a, F> {
    out: &'a mut [MaybeUninit<f32>],
    x: &'a [f32],
    y: &'a [f32],
    f: &'a F,
}

impl<F: Fn(f32, f32) -> f32> WithSimd for ZipMap<'_, F> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: Simd>(self, _: S) {
        for ((o, x), y) in self.out.iter_mut().zip(self.x).zip(self.y) {
            o.write((self.f)(*x, *y));
        }
    }
}
