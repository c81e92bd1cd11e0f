//! The input gradient of a convolution (a transposed convolution), by sub-pixel phases: along an
//! axis of stride `s`, the input positions `p, p + s, p + 2s, ...` (in padded coordinates) are
//! reached only by the kernel taps `t` with `t * dilation ≡ p (mod s)`, so each of the `s_h * s_w`
//! phases is a stride-1 convolution of the output gradient with those taps, flipped and
//! transposed, and the phases interleave into the gradient. The work is the forward pass's, where
//! zero-dilating the gradient by the stride first would multiply `s_h * s_w` times as many zeros.
//! A stride-1 convolution is the one phase.

use candle_core::{Result, Tensor};

use super::conv2d::Conv2d;
use super::geometry::{Axis, Window};
use crate::model::cpu::{self, interleave::Weave};

/// One phase of one axis (for a phase no tap reaches, the convolution's own axis and no crop:
/// nothing is computed for it).
struct Phase {
    /// The stride-1 axis of its convolution (as many kernel taps as reach the phase), padding
    /// included.
    axis: Axis,
    /// Output-gradient elements to drop before and after, where the phase's convolution starts
    /// inside the gradient rather than in padding before it.
    crop: (usize, usize),
}

/// An axis cut into its phases, each computed at the same positions `first..first + count`.
struct AxisPhases {
    phases: Vec<Phase>,
    /// Positions computed per phase (some in the padding, dropped when interleaving).
    count: usize,
    /// Where the input's first element is among the interleaved positions.
    offset: usize,
}

impl AxisPhases {
    /// Axis `a` of a convolution over `size` inputs with `out` outputs.
    fn new(a: &Axis, size: usize, out: usize) -> AxisPhases {
        let s = a.stride;
        // Padded positions `Y = p + s * r` of the input run over `before..before + size`.
        let first = a.before / s;
        let count = (a.before + size).div_ceil(s) - first;
        let phases = axis_taps(a)
            .into_iter()
            .map(|taps| {
                let Some(&t0) = taps.first() else {
                    return Phase {
                        axis: *a,
                        crop: (0, 0),
                    };
                };
                // Tap `taps[m]` links input `p + s * r` to output `r - q0 - step * m`.
                let q0 = t0 * a.dilation / s;
                let step = taps.get(1).map_or(1, |t1| (t1 - t0) * a.dilation / s);
                let reach = (step * (taps.len() - 1)) as isize;
                // Correlating with the flipped taps, computed position `i` (input `first + i`)
                // reads the gradient from `i + first - q0 - reach`.
                let before = q0 as isize + reach - first as isize;
                let after = count as isize - out as isize - before + reach;
                Phase {
                    axis: Axis {
                        kernel: taps.len(),
                        stride: 1,
                        dilation: step,
                        before: before.max(0) as usize,
                        after: after.max(0) as usize,
                    },
                    crop: ((-before).max(0) as usize, (-after).max(0) as usize),
                }
            })
            .collect();
        AxisPhases {
            phases,
            count,
            offset: a.before - first * s,
        }
    }
}

/// The flipped, transposed kernel of every phase (row-phase major; `None` where no tap reaches
/// the phase), made once per convolution: the phases' taps depend on the kernel, stride and
/// dilation only.
#[derive(Debug, Clone)]
pub struct PhaseKernels {
    /// Each phase's transposed convolution (its window set per call), or `None`.
    kernels: Vec<Option<Conv2d>>,
}

impl PhaseKernels {
    pub fn new(conv: &Conv2d) -> Result<PhaseKernels> {
        let (ah, aw) = (conv.window.h, conv.window.w);
        let (rows, cols) = (axis_taps(&ah), axis_taps(&aw));
        let mut kernels = Vec::with_capacity(rows.len() * cols.len());
        for th in &rows {
            for tw in &cols {
                kernels.push(if th.is_empty() || tw.is_empty() {
                    None
                } else {
                    let kernel = phase_kernel(conv, th, tw)?;
                    Some(Conv2d::new(kernel, None, conv.window, conv.groups))
                });
            }
        }
        Ok(PhaseKernels { kernels })
    }
}

/// For each phase of axis `a`, the kernel taps that reach it, ascending.
fn axis_taps(a: &Axis) -> Vec<Vec<usize>> {
    (0..a.stride)
        .map(|p| {
            (0..a.kernel)
                .filter(|t| (t * a.dilation) % a.stride == p)
                .collect()
        })
        .collect()
}

/// The taps `th` x `tw` of the kernel, flipped, with input and output channels swapped in each
/// group: the kernel of the transposed convolution of one phase.
fn phase_kernel(conv: &Conv2d, th: &[usize], tw: &[usize]) -> Result<Tensor> {
    let mut weight = conv.weight.clone();
    for (dim, taps) in [(2, th), (3, tw)] {
        if taps.len() < weight.dim(dim)? {
            let taps: Vec<u32> = taps.iter().map(|&t| t as u32).collect();
            weight = weight.index_select(&Tensor::new(taps.as_slice(), weight.device())?, dim)?;
        }
    }
    let (co, ci_g, kh, kw) = weight.dims4()?;
    let groups = conv.groups;
    weight
        .reshape((groups, co / groups, ci_g, kh, kw))?
        .transpose(1, 2)?
        .reshape((groups * ci_g, co / groups, kh, kw))?
        .flip(&[2, 3])?
        .contiguous()
}

/// Gradient w.r.t. the input of `conv` (spatial size `(h, w)`) from the output gradient `g`,
/// with the convolution's [`PhaseKernels`].
pub fn input_gradient(
    conv: &Conv2d,
    kernels: &PhaseKernels,
    g: &Tensor,
    (h, w): (usize, usize),
) -> Result<Tensor> {
    let (n, _, gh, gw) = g.dims4()?;
    let channels = conv.weight.dim(1)? * conv.groups;
    let rows = AxisPhases::new(&conv.window.h, h, gh);
    let cols = AxisPhases::new(&conv.window.w, w, gw);
    let mut planes = Vec::with_capacity(kernels.kernels.len());
    let mut kernel = kernels.kernels.iter();
    for ph in &rows.phases {
        for pw in &cols.phases {
            planes.push(match kernel.next().expect("one kernel per phase") {
                None => None,
                Some(k) => Some(phase_gradient(k, g, ph, pw)?),
            });
        }
    }
    let (sh, sw) = (rows.phases.len(), cols.phases.len());
    if let [Some(only)] = &planes[..] {
        // Stride 1: the one phase is the gradient.
        return Ok(only.clone());
    }
    let weave = Weave {
        strides: (sh, sw),
        phase_size: (rows.count, cols.count),
        offset: (rows.offset, cols.offset),
        size: (h, w),
    };
    if cpu::handles(g) {
        return cpu::interleave::interleave(&planes, &weave);
    }
    let zeros = Tensor::zeros((n, channels, rows.count, cols.count), g.dtype(), g.device())?;
    let planes: Vec<Tensor> = planes
        .into_iter()
        .map(|p| p.unwrap_or_else(|| zeros.clone()))
        .collect();
    // (sh, sw, n, c, rows, cols) -> (n, c, rows, sh, cols, sw): phase planes interleaved.
    Tensor::stack(&planes, 0)?
        .reshape((sh, sw, n, channels, rows.count, cols.count))?
        .permute((2, 3, 4, 0, 5, 1))?
        .contiguous()?
        .reshape((n, channels, rows.count * sh, cols.count * sw))?
        .narrow(2, rows.offset, h)?
        .narrow(3, cols.offset, w)?
        .contiguous()
}

/// One phase's gradient: the output gradient convolved with the phase's kernel.
fn phase_gradient(transposed: &Conv2d, g: &Tensor, ph: &Phase, pw: &Phase) -> Result<Tensor> {
    let transposed = transposed.with_window(Window {
        h: ph.axis,
        w: pw.axis,
    });
    let (_, _, gh, gw) = g.dims4()?;
    let g = g.narrow(2, ph.crop.0, gh - ph.crop.0 - ph.crop.1)?.narrow(
        3,
        pw.crop.0,
        gw - pw.crop.0 - pw.crop.1,
    )?;
    transposed.apply(&g)
}
