//! Loads, stores and copies of short runs of `f32`s by vector instructions, for kernels that
//! move a few values at a time (rows of a small map, a run of tiles): as `memcpy` and `memset`
//! calls such copies cost more in calls than in bytes. Each is `#[inline(always)]`, to be
//! compiled into a kernel's `with_simd` (see [`super::vectorized`]).

use pulp::Simd;

use super::lanes;

/// One run of `S`'s lanes read from the start of `src`.
#[inline(always)]
pub fn load<S: Simd>(src: &[f32]) -> S::f32s {
    let src = &src[..lanes::<S>()];
    // SAFETY: `src` holds exactly one vector's values; the read is unaligned.
    unsafe { src.as_ptr().cast::<S::f32s>().read_unaligned() }
}

/// One run of `S`'s lanes written at the start of `dst`.
#[inline(always)]
pub fn store<S: Simd>(dst: &mut [f32], v: S::f32s) {
    let dst = &mut dst[..lanes::<S>()];
    // SAFETY: `dst` holds exactly one vector's values; the write is unaligned.
    unsafe { dst.as_mut_ptr().cast::<S::f32s>().write_unaligned(v) }
}

/// `dst` is `row[x..x + dst.len()]`, zero where that lies outside the row.
#[inline(always)]
pub fn copy_padded<S: Simd>(simd: S, row: &[f32], x: isize, dst: &mut [f32]) {
    let w = row.len() as isize;
    let (from, to) = (x.clamp(0, w), (x + dst.len() as isize).clamp(0, w));
    let skip = ((from - x) as usize).min(dst.len());
    let inside = (to - from).max(0) as usize;
    let (before, rest) = dst.split_at_mut(skip);
    let (middle, after) = rest.split_at_mut(inside);
    fill_zero(simd, before);
    copy(simd, &row[from as usize..][..inside], middle);
    fill_zero(simd, after);
}

/// `dst` is `src`.
#[inline(always)]
pub fn copy<S: Simd>(simd: S, src: &[f32], dst: &mut [f32]) {
    let n = lanes::<S>();
    let whole = dst.len() / n * n;
    for k in (0..whole).step_by(n) {
        store::<S>(&mut dst[k..], load::<S>(&src[k..]));
    }
    if whole < dst.len() {
        let tail = simd.partial_load_f32s(&src[whole..dst.len()]);
        simd.partial_store_f32s(&mut dst[whole..], tail);
    }
}

/// `dst` set to zero.
#[inline(always)]
pub fn fill_zero<S: Simd>(simd: S, dst: &mut [f32]) {
    let (n, zero) = (lanes::<S>(), simd.splat_f32s(0.0));
    let whole = dst.len() / n * n;
    for k in (0..whole).step_by(n) {
        store::<S>(&mut dst[k..], zero);
    }
    if whole < dst.len() {
        simd.partial_store_f32s(&mut dst[whole..], zero);
    }
}
