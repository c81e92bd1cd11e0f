//! Depthwise convolution on the CPU (one filter per channel, MobileNet's, EfficientNet's and
//! ConvNeXt's), planes in parallel. Each input plane is copied, zero-padded, into phase planes
//! (see [`Phases`]), and the outputs are one long vectorised loop over them: blocks of outputs
//! kept in registers while every tap is multiplied and added. The input gradient of a depthwise
//! convolution is itself one (with the flipped kernel), so this kernel serves both passes.

use candle_core::{bail, Result, Tensor};
use pulp::{Simd, WithSimd};
use rayon::prelude::*;

use super::phases::{Phases, SLACK};
use super::{vectorized, with_data, ConvArgs};

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

/// Vectors of outputs accumulated together, in registers: independent chains of multiply-adds
/// (four AVX-512 vectors fill the phase planes' slack).
const VECTORS: usize = 4;

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
    let layout = Phases::new((h, w), conv.window, (oh, ow));
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
        l.split(self.src, self.phases, 0.0);
        // Outputs `(oy, ox)` at `oy * span + ox`, for every column of the phase planes, in
        // blocks of `VECTORS` vectors.
        let block = VECTORS * S::F32_LANES;
        debug_assert!(block <= SLACK);
        let count = l.count();
        self.flat.clear();
        self.flat.resize(count.next_multiple_of(block), 0.0);
        let phases: &[f32] = self.phases;
        for (b, dst) in self.flat.chunks_exact_mut(block).enumerate() {
            let mut acc = [simd.splat_f32s(self.bias); VECTORS];
            for (&tap, &read) in self.taps.iter().zip(l.reads()) {
                let tap = simd.splat_f32s(tap);
                let (src, _) = S::as_simd_f32s(&phases[read + b * block..][..block]);
                for (a, &v) in acc.iter_mut().zip(src) {
                    *a = simd.mul_add_e_f32s(tap, v, *a);
                }
            }
            let (dst, _) = S::as_mut_simd_f32s(dst);
            dst.copy_from_slice(&acc);
        }
        l.gather(self.flat, self.out);
    }
}
