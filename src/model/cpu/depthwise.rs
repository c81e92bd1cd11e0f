//! Depthwise convolution on the CPU (one filter per channel, MobileNet's, EfficientNet's and
//! ConvNeXt's), planes in parallel. Each input plane is copied once, zero-padded, into
//! `stride_h * stride_w` phase planes (rows `py, py + stride_h, ...` by columns
//! `px, px + stride_w, ...`); in those, every kernel tap reads the same contiguous run for a
//! whole run of outputs laid out row after row with the phase planes' row length. So the
//! plane is one long vectorised loop: blocks of outputs kept in registers while all the taps
//! are added, with no per-row bounds. The columns past the output's width in each row are
//! computed and dropped. The input gradient of a depthwise convolution is itself one (with the
//! flipped kernel), so this kernel serves both passes.

use candle_core::{bail, Result, Tensor};
use pulp::{Simd, WithSimd};
use rayon::prelude::*;

use super::{vectorized, with_data, ConvArgs};
use crate::model::ops::geometry::Axis;

/// Whether this convolution of `x` is depthwise: groups equal to the input and output channels.
pub fn applies(x: &Tensor, conv: &ConvArgs) -> bool {
    let (d, s) = (conv.weight.dims(), x.dims());
    d.len() == 4
        && s.len() == 4
        && conv.groups > 1
        && d[0] == conv.groups
        && d[1] == 1
        && s[1] == conv.groups
}

/// Vectors of outputs accumulated together, in registers: independent chains of multiply-adds.
const VECTORS: usize = 4;

/// The most outputs in one block (four AVX-512 vectors).
const BLOCK: usize = VECTORS * 16;

/// `conv` (see [`applies`]) of `x` (NCHW, f32, on the CPU), bias included.
pub fn conv2d(x: &Tensor, conv: &ConvArgs) -> Result<Tensor> {
    let (n, c, h, w) = x.dims4()?;
    let (_, _, kh, kw) = conv.weight.dims4()?;
    let (ah, aw) = (conv.window.h, conv.window.w);
    if (ah.kernel, aw.kernel) != (kh, kw) {
        bail!("conv2d: the window's kernel differs from the weight's");
    }
    let (oh, ow) = conv
        .window
        .output((h, w))
        .map_err(|e| candle_core::Error::msg(format!("conv2d: {e}")))?;
    let bias = conv.bias.map(|b| b.to_vec1::<f32>()).transpose()?;
    let layout = Phases::new((h, w), (ah, aw), (oh, ow));
    let mut out = vec![0f32; n * c * oh * ow];
    with_data(x, |input| {
        with_data(conv.weight, |weight| {
            out.par_chunks_mut(oh * ow)
                .zip(input.par_chunks(h * w))
                .enumerate()
                .for_each_init(
                    || (Vec::new(), Vec::new()),
                    |(phases, flat), (plane, (out, src))| {
                        let ch = plane % c;
                        vectorized(Plane {
                            layout: &layout,
                            out,
                            src,
                            phases,
                            flat,
                            taps: &weight[ch * kh * kw..][..kh * kw],
                            bias: bias.as_ref().map_or(0.0, |b| b[ch]),
                        })
                    },
                );
            Ok(())
        })
    })?;
    Tensor::from_vec(out, (n, c, oh, ow), x.device())
}

/// Where things are in the phase planes, the same for every plane of a convolution.
struct Phases {
    size: (usize, usize),
    axes: (Axis, Axis),
    out_size: (usize, usize),
    /// Row length of the phase planes.
    span: usize,
    /// Length of one phase plane, with room for a block read past its last row from its
    /// last column.
    stride: usize,
    /// For each tap, `ky * kw + kx`: its phase plane's offset plus the offset of its first read.
    reads: Vec<usize>,
}

impl Phases {
    fn new(size: (usize, usize), axes: (Axis, Axis), out_size: (usize, usize)) -> Self {
        let (ah, aw) = axes;
        let rows = (size.0 + ah.before + ah.after).div_ceil(ah.stride);
        let span = (size.1 + aw.before + aw.after).div_ceil(aw.stride);
        let stride = rows * span + span + BLOCK;
        let mut reads = Vec::with_capacity(ah.kernel * aw.kernel);
        for ky in 0..ah.kernel {
            for kx in 0..aw.kernel {
                // Padded row `oy * stride_h + ky * dilation_h` is row `oy + ry` of phase `py`.
                let (py, ry) = (
                    (ky * ah.dilation) % ah.stride,
                    (ky * ah.dilation) / ah.stride,
                );
                let (px, rx) = (
                    (kx * aw.dilation) % aw.stride,
                    (kx * aw.dilation) / aw.stride,
                );
                reads.push((py * aw.stride + px) * stride + ry * span + rx);
            }
        }
        Phases {
            size,
            axes,
            out_size,
            span,
            stride,
            reads,
        }
    }
}

/// One output plane from one input plane.
struct Plane<'a> {
    layout: &'a Phases,
    out: &'a mut [f32],
    src: &'a [f32],
    phases: &'a mut Vec<f32>,
    flat: &'a mut Vec<f32>,
    taps: &'a [f32],
    bias: f32,
}

impl WithSimd for Plane<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: Simd>(self, simd: S) {
        let l = self.layout;
        let ((_, w), (ah, aw), (oh, ow)) = (l.size, l.axes, l.out_size);
        let (sh, sw) = (ah.stride, aw.stride);
        self.phases.clear();
        self.phases.resize(sh * sw * l.stride, 0.0);
        for (y, line) in self.src.chunks_exact(w).enumerate() {
            let py = y + ah.before;
            let row = (py % sh) * sw * l.stride + (py / sh) * l.span;
            // Column `x` goes to phase `(x + before) % sw`, at `(x + before) / sw`.
            for phase in 0..sw.min(w) {
                let x0 = (phase + sw - aw.before % sw) % sw;
                let at = row + phase * l.stride + (x0 + aw.before) / sw;
                let dst = &mut self.phases[at..];
                for (d, &v) in dst.iter_mut().zip(line[x0..].iter().step_by(sw)) {
                    *d = v;
                }
            }
        }
        // Outputs `(oy, ox)` at `oy * span + ox`, for every column of the phase planes, in
        // blocks of `VECTORS` vectors.
        let block = VECTORS * S::F32_LANES;
        let count = oh * l.span;
        self.flat.clear();
        self.flat.resize(count.next_multiple_of(block), 0.0);
        let phases: &[f32] = self.phases;
        for (b, dst) in self.flat.chunks_exact_mut(block).enumerate() {
            let mut acc = [simd.splat_f32s(self.bias); VECTORS];
            for (&tap, &read) in self.taps.iter().zip(&l.reads) {
                let tap = simd.splat_f32s(tap);
                let (src, _) = S::as_simd_f32s(&phases[read + b * block..][..block]);
                for (a, &v) in acc.iter_mut().zip(src) {
                    *a = simd.mul_add_e_f32s(tap, v, *a);
                }
            }
            let (dst, _) = S::as_mut_simd_f32s(dst);
            dst.copy_from_slice(&acc);
        }
        for (out, flat) in self.out.chunks_exact_mut(ow).zip(self.flat.chunks(l.span)) {
            out.copy_from_slice(&flat[..ow]);
        }
    }
}
