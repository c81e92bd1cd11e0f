//! Phase planes woven into whole planes: the last step of a strided convolution's input
//! gradient (see [`crate::model::ops::conv2d_gradient`]), where each phase's gradient was
//! computed as a plane of its own. Planes in parallel, one pass.

use candle_core::{Result, Tensor};
use rayon::prelude::*;

use super::{with_all_data, MIN_TASK_VALUES};

/// Where the phases go: with strides `(sh, sw)`, output `(y, x)` is the value of phase
/// `((y + offset.0) % sh, (x + offset.1) % sw)` at `((y + offset.0) / sh, (x + offset.1) / sw)`.
#[derive(Debug, Clone, Copy)]
pub struct Weave {
    pub strides: (usize, usize),
    /// Rows and columns of every phase plane.
    pub phase_size: (usize, usize),
    pub offset: (usize, usize),
    /// Rows and columns of the output planes.
    pub size: (usize, usize),
}

/// `phases` (row-phase major, `(N, C, rows, cols)` each; `None` for a phase of zeros) woven into
/// one `(N, C, h, w)` tensor.
pub fn interleave(phases: &[Option<Tensor>], weave: &Weave) -> Result<Tensor> {
    let present: Vec<Tensor> = phases.iter().flatten().cloned().collect();
    let (n, c, _, _) = present
        .first()
        .ok_or_else(|| candle_core::Error::msg("interleave: every phase is zero"))?
        .dims4()?;
    let (h, w) = weave.size;
    let (rows, cols) = weave.phase_size;
    let (sh, sw) = weave.strides;
    let mut out = vec![0f32; n * c * h * w];
    with_all_data(&present, |data| {
        // Each phase's data, or none.
        let mut next = data.iter();
        let sources: Vec<Option<&[f32]>> = phases
            .iter()
            .map(|p| {
                p.as_ref()
                    .map(|_| *next.next().expect("one slice per tensor"))
            })
            .collect();
        out.par_chunks_mut(h * w)
            .with_min_len(MIN_TASK_VALUES.div_ceil(h * w))
            .enumerate()
            .for_each(|(plane, out)| {
                for (y, line) in out.chunks_exact_mut(w).enumerate() {
                    let (py, r) = ((y + weave.offset.0) % sh, (y + weave.offset.0) / sh);
                    for px in 0..sw.min(w) {
                        // Output columns `x0, x0 + sw, ...` come from phase column `px`.
                        let x0 = (px + sw - weave.offset.1 % sw) % sw;
                        let first = (x0 + weave.offset.1) / sw;
                        let Some(src) = sources[py * sw + px] else {
                            continue;
                        };
                        let row = &src[(plane * rows + r) * cols..][..cols];
                        for (d, &v) in line[x0..].iter_mut().step_by(sw).zip(&row[first..]) {
                            *d = v;
                        }
                    }
                }
            });
        Ok(())
    })?;
    Tensor::from_vec(out, (n, c, h, w), &candle_core::Device::Cpu)
}
