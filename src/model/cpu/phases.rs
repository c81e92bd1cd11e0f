//! The layout the sliding-window kernels (depthwise convolution, pooling) read from: one input
//! plane copied once, padded, into `stride_h * stride_w` phase planes (rows `py, py + stride_h,
//! ...` by columns `px, px + stride_w, ...`). In those, every window tap reads one contiguous
//! run for all the outputs laid out row after row with the phase planes' row length, so a
//! kernel is a few long vectorised loops with no per-row bounds. The columns past the output's
//! width in each row are computed and dropped by [`Phases::gather`].

use crate::model::ops::geometry::Window;

/// Extra values after each phase plane, so that a block of this many outputs may be read past
/// the last one (the dropped columns) without leaving the buffer.
pub const SLACK: usize = 64;

/// Where things are in the phase planes, the same for every plane of one call.
pub struct Phases {
    size: (usize, usize),
    window: Window,
    out_size: (usize, usize),
    /// Row length of the phase planes.
    span: usize,
    /// Length of one phase plane, with room for [`SLACK`] reads past its last row from its last
    /// column.
    stride: usize,
    /// For each tap `ky * kernel_w + kx`: where its first read is, from the first phase plane.
    reads: Vec<usize>,
    /// Which phase rows (`py`) and phase columns (`px`) some tap reads: a kernel smaller than
    /// its stride (a 1x1 stride-2 convolution) leaves the others unread, and unwritten.
    read_rows: Vec<bool>,
    read_columns: Vec<bool>,
}

impl Phases {
    /// The layout for a window over `size` planes giving `out_size` outputs; the padded extent
    /// covers every window, `ceil_mode`'s partial last ones included.
    pub fn new(size: (usize, usize), window: &Window, out_size: (usize, usize)) -> Self {
        let (ah, aw) = (window.h, window.w);
        let extent = |a: &crate::model::ops::geometry::Axis, size: usize, out: usize| {
            (size + a.before + a.after).max((out - 1) * a.stride + a.span())
        };
        let rows = extent(&ah, size.0, out_size.0).div_ceil(ah.stride);
        let span = extent(&aw, size.1, out_size.1).div_ceil(aw.stride);
        let stride = rows * span + span + SLACK;
        let mut reads = Vec::with_capacity(ah.kernel * aw.kernel);
        let (mut read_rows, mut read_columns) = (vec![false; ah.stride], vec![false; aw.stride]);
        for ky in 0..ah.kernel {
            read_rows[(ky * ah.dilation) % ah.stride] = true;
        }
        for kx in 0..aw.kernel {
            read_columns[(kx * aw.dilation) % aw.stride] = true;
        }
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
            window: *window,
            out_size,
            span,
            stride,
            reads,
            read_rows,
            read_columns,
        }
    }

    /// Whether the outputs of each row lie contiguously, one per phase-plane column (no
    /// columns to drop): a 1x1 window's phase plane is then the input its outputs read.
    pub fn dense(&self) -> bool {
        self.span == self.out_size.1
    }

    /// Outputs computed per plane: every column of the phase planes' rows.
    pub fn count(&self) -> usize {
        self.out_size.0 * self.span
    }

    /// Offsets of the taps' first reads, in row-major tap order.
    pub fn reads(&self) -> &[usize] {
        &self.reads
    }

    /// Output `(oy, ox)`'s place among the [`count`](Self::count) computed ones.
    pub fn position(&self, oy: usize, ox: usize) -> usize {
        oy * self.span + ox
    }

    /// Floats in the phase planes of one input plane.
    pub fn len(&self) -> usize {
        self.window.h.stride * self.window.w.stride * self.stride
    }

    /// Copies the plane `src` (`h * w`) into `phases`, the padding set to `fill`.
    #[inline(always)]
    pub fn split(&self, src: &[f32], phases: &mut Vec<f32>, fill: f32) {
        phases.clear();
        phases.resize(self.len(), fill);
        self.split_into(src, phases);
    }

    /// Copies the plane `src` (`h * w`) into `phases` ([`len`](Self::len) floats), leaving
    /// the padding as it is.
    #[inline(always)]
    pub fn split_into(&self, src: &[f32], phases: &mut [f32]) {
        let (ah, aw) = (self.window.h, self.window.w);
        let (sh, sw, w) = (ah.stride, aw.stride, self.size.1);
        for (y, line) in src.chunks_exact(w).enumerate() {
            let py = y + ah.before;
            if !self.read_rows[py % sh] {
                continue;
            }
            let row = (py % sh) * sw * self.stride + (py / sh) * self.span;
            if sw == 1 {
                phases[row + aw.before..][..w].copy_from_slice(line);
                continue;
            }
            if sw == 2 && self.read_columns == [true, true] {
                self.split_pairs(line, &mut phases[row..]);
                continue;
            }
            // Column `x` goes to phase `(x + before) % sw`, at `(x + before) / sw`.
            for phase in (0..sw.min(w)).filter(|&p| self.read_columns[p]) {
                let x0 = (phase + sw - aw.before % sw) % sw;
                let at = row + phase * self.stride + (x0 + aw.before) / sw;
                for (d, &v) in phases[at..].iter_mut().zip(line[x0..].iter().step_by(sw)) {
                    *d = v;
                }
            }
        }
    }

    /// One row of a stride-2 split, both column phases at once (a loop the compiler turns into
    /// vector shuffles): `phases` starts at the row in the first phase plane.
    #[inline(always)]
    fn split_pairs(&self, line: &[f32], phases: &mut [f32]) {
        let before = self.window.w.before;
        // Even columns go to phase `a`, odd ones to the other, both from `(x + before) / 2`.
        let a = before % 2;
        let (even_at, odd_at) = (
            a * self.stride + before / 2,
            (1 - a) * self.stride + before.div_ceil(2),
        );
        let (even, odd) = if even_at < odd_at {
            let (lo, hi) = phases.split_at_mut(odd_at);
            (&mut lo[even_at..], hi)
        } else {
            let (lo, hi) = phases.split_at_mut(even_at);
            (hi, &mut lo[odd_at..])
        };
        let pairs = line.len() / 2;
        for ((e, o), pair) in even[..pairs]
            .iter_mut()
            .zip(&mut odd[..pairs])
            .zip(line.chunks_exact(2))
        {
            *e = pair[0];
            *o = pair[1];
        }
        if line.len() % 2 == 1 {
            even[pairs] = line[line.len() - 1];
        }
    }

    /// Copies the outputs proper (the first `ow` of every row) from the computed ones.
    #[inline(always)]
    pub fn gather(&self, flat: &[f32], out: &mut [f32]) {
        let ow = self.out_size.1;
        for (out, flat) in out.chunks_exact_mut(ow).zip(flat.chunks(self.span)) {
            out.copy_from_slice(&flat[..ow]);
        }
    }
}
