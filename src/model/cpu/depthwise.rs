//! Depthwise convolution on the CPU (one filter per channel, MobileNet's, EfficientNet's and
//! ConvNeXt's): each output plane is accumulated directly from its input plane, one kernel tap at
//! a time over whole rows, planes in parallel. The input gradient of a depthwise convolution is
//! itself one (with the flipped kernel), so this kernel serves both passes.

use candle_core::{bail, Result, Tensor};
use rayon::prelude::*;

use super::{with_data, ConvArgs};

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
    let mut out = vec![0f32; n * c * oh * ow];
    with_data(x, |input| {
        with_data(conv.weight, |weight| {
            out.par_chunks_mut(oh * ow)
                .zip(input.par_chunks(h * w))
                .enumerate()
                .for_each(|(plane, (dst, src))| {
                    let ch = plane % c;
                    dst.fill(bias.as_ref().map_or(0.0, |b| b[ch]));
                    let taps = &weight[ch * kh * kw..][..kh * kw];
                    for oy in 0..oh {
                        let row = &mut dst[oy * ow..][..ow];
                        for ky in 0..kh {
                            let iy =
                                (oy * ah.stride + ky * ah.dilation) as isize - ah.before as isize;
                            if iy < 0 || iy >= h as isize {
                                continue;
                            }
                            let line = &src[iy as usize * w..][..w];
                            for kx in 0..kw {
                                accumulate(
                                    row,
                                    line,
                                    taps[ky * kw + kx],
                                    kx * aw.dilation,
                                    aw.stride,
                                    aw.before,
                                );
                            }
                        }
                    }
                });
            Ok(())
        })
    })?;
    Tensor::from_vec(out, (n, c, oh, ow), x.device())
}

/// `row[ox] += tap * line[ox * stride + offset - pad]` where that input column exists.
fn accumulate(row: &mut [f32], line: &[f32], tap: f32, offset: usize, stride: usize, pad: usize) {
    let w = line.len() as isize;
    // Output columns whose input column `ox * stride + offset - pad` lies in `0..w`.
    let shift = offset as isize - pad as isize;
    let first = if shift >= 0 {
        0
    } else {
        ((-shift) as usize).div_ceil(stride)
    };
    let last = if w - shift <= 0 {
        0
    } else {
        (((w - shift) as usize).div_ceil(stride)).min(row.len())
    };
    if first >= last {
        return;
    }
    let start = (first as isize * stride as isize + shift) as usize;
    if stride == 1 {
        for (o, i) in row[first..last].iter_mut().zip(&line[start..]) {
            *o += tap * i;
        }
    } else {
        for (o, i) in row[first..last]
            .iter_mut()
            .zip(line[start..].iter().step_by(stride))
        {
            *o += tap * i;
        }
    }
}
