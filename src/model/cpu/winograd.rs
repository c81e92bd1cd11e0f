//! 3x3 stride-1 convolution by Winograd's minimal filtering F(2x2, 3x3) (Lavin & Gray, 2016):
//! each 2x2 output tile is `A^T [ sum_c (G g G^T) ⊙ (B^T d B) ] A` over 4x4 input tiles, so the
//! channel sum becomes 16 matrix multiplies with 2.25x fewer multiplications than im2col.
//! Tiles are processed in blocks, one block per task on rayon's pool.

use candle_core::{Result, Tensor};
use gemm::Parallelism;

use super::ConvArgs;
use super::{pieces_per_block, run_jobs, with_data, SharedOut};

/// Upper bound on one block's transformed input, in floats (16 MiB).
const MAX_BLOCK_FLOATS: usize = 1 << 22;
/// Fewest tiles worth a block of their own.
const MIN_BLOCK: usize = 32;

/// Whether the Winograd kernel computes this convolution of `x`: 3x3, stride 1, no dilation,
/// no groups, and wide and large enough for the transforms to pay (measured with
/// `scripts/bench_conv_torch.py`: with 256 channels or more and about 200 tiles or more it beats
/// im2col; below that, the transforms cost more than the multiplies they save).
pub fn applies(x: &Tensor, conv: &ConvArgs) -> bool {
    let (d, s) = (conv.weight.dims(), x.dims());
    let Some(u) = conv.window.uniform() else {
        return false;
    };
    let tiles = |size: usize| (size + 2 * u.padding).saturating_sub(2).div_ceil(2);
    d.len() == 4
        && s.len() == 4
        && d[2] == 3
        && d[3] == 3
        && u.stride == 1
        && u.dilation == 1
        && conv.groups == 1
        && d[0] >= 256
        && d[1] >= 256
        && s[0] * tiles(s[2]) * tiles(s[3]) >= 196
}

/// Sizes of one convolution and its tiling.
#[derive(Debug, Clone, Copy)]
struct Plan {
    cin: usize,
    cout: usize,
    h: usize,
    w: usize,
    pad: usize,
    oh: usize,
    ow: usize,
    /// Tiles per row and per column of the output.
    th: usize,
    tw: usize,
    /// Tiles per block.
    block: usize,
}

impl Plan {
    fn tiles(&self) -> usize {
        self.th * self.tw
    }

    fn blocks_per_image(&self) -> usize {
        self.tiles().div_ceil(self.block)
    }
}

/// `conv` (see [`applies`]) of `x` (NCHW, f32, on the CPU), bias included.
pub fn conv2d(x: &Tensor, conv: &ConvArgs) -> Result<Tensor> {
    let (batch, cin, h, w) = x.dims4()?;
    let cout = conv.weight.dims()[0];
    let Some(uniform) = conv.window.uniform() else {
        return super::conv::conv2d(x, conv);
    };
    let pad = uniform.padding;
    let (oh, ow) = (
        (h + 2 * pad).saturating_sub(2),
        (w + 2 * pad).saturating_sub(2),
    );
    if oh == 0 || ow == 0 || conv.weight.dims()[1] != cin {
        // Let the general kernel report the shape error.
        return super::conv::conv2d(x, conv);
    }
    let (th, tw) = (oh.div_ceil(2), ow.div_ceil(2));
    let threads = rayon::current_num_threads();
    let tiles = th * tw;
    let by_memory = (16 * cin * tiles).div_ceil(MAX_BLOCK_FLOATS);
    let per_image = pieces_per_block(batch, by_memory, threads);
    let block = tiles.div_ceil(per_image).max(MIN_BLOCK).min(tiles);
    let plan = Plan {
        cin,
        cout,
        h,
        w,
        pad,
        oh,
        ow,
        th,
        tw,
        block,
    };
    let u = with_data(conv.weight, |g| Ok(transform_kernels(g, cout, cin)))?;
    let mut out = vec![0f32; batch * cout * oh * ow];
    let shared = SharedOut::new(&mut out);
    with_data(x, |input| {
        let bias = conv.bias.map(|b| b.to_vec1::<f32>()).transpose()?;
        let jobs = batch * plan.blocks_per_image();
        let run = |bufs: &mut (Vec<f32>, Vec<f32>), job: usize, par: Parallelism| {
            let (n, b) = (job / plan.blocks_per_image(), job % plan.blocks_per_image());
            let first = b * plan.block;
            let count = plan.block.min(plan.tiles() - first);
            let image = &input[n * cin * h * w..][..cin * h * w];
            transform_input(&plan, image, first, count, &mut bufs.0);
            multiply(&plan, &u, &bufs.0, &mut bufs.1, count, par);
            // SAFETY: this job writes only the output pixels of its own tiles of image `n`.
            unsafe { transform_output(&plan, &bufs.1, bias.as_deref(), shared, n, first, count) };
        };
        let buffers = || {
            (
                vec![0f32; 16 * cin * plan.block],
                vec![0f32; 16 * cout * plan.block],
            )
        };
        run_jobs(jobs, buffers, run);
        Ok(())
    })?;
    Tensor::from_vec(out, (batch, cout, oh, ow), x.device())
}

/// `G g G^T` for every (output, input) channel pair, laid out `[16][cout][cin]`.
fn transform_kernels(g: &[f32], cout: usize, cin: usize) -> Vec<f32> {
    let mut u = vec![0f32; 16 * cout * cin];
    let plane = cout * cin;
    for (pair, k) in g.chunks_exact(9).enumerate() {
        // Rows of G g (4x3), then each row times G^T.
        let rows = [
            [k[0], k[1], k[2]],
            [
                (k[0] + k[3] + k[6]) / 2.0,
                (k[1] + k[4] + k[7]) / 2.0,
                (k[2] + k[5] + k[8]) / 2.0,
            ],
            [
                (k[0] - k[3] + k[6]) / 2.0,
                (k[1] - k[4] + k[7]) / 2.0,
                (k[2] - k[5] + k[8]) / 2.0,
            ],
            [k[6], k[7], k[8]],
        ];
        for (i, r) in rows.iter().enumerate() {
            let cols = [
                r[0],
                (r[0] + r[1] + r[2]) / 2.0,
                (r[0] - r[1] + r[2]) / 2.0,
                r[2],
            ];
            for (j, v) in cols.into_iter().enumerate() {
                u[(i * 4 + j) * plane + pair] = v;
            }
        }
    }
    u
}

/// `B^T d B` for each channel and each tile `first..first + count` of one image, laid out
/// `[16][cin][count]` (row stride `count`).
fn transform_input(p: &Plan, image: &[f32], first: usize, count: usize, v: &mut [f32]) {
    let plane = p.cin * count;
    for c in 0..p.cin {
        let src = &image[c * p.h * p.w..][..p.h * p.w];
        for t in 0..count {
            let (ty, tx) = ((first + t) / p.tw, (first + t) % p.tw);
            let mut d = [[0f32; 4]; 4];
            for (i, row) in d.iter_mut().enumerate() {
                let y = (2 * ty + i) as isize - p.pad as isize;
                if y < 0 || y >= p.h as isize {
                    continue;
                }
                let line = &src[y as usize * p.w..][..p.w];
                for (j, v) in row.iter_mut().enumerate() {
                    let x = (2 * tx + j) as isize - p.pad as isize;
                    if x >= 0 && x < p.w as isize {
                        *v = line[x as usize];
                    }
                }
            }
            // B^T d: combinations of rows; then (B^T d) B: the same on columns.
            let r = [
                sub(d[0], d[2]),
                add(d[1], d[2]),
                sub(d[2], d[1]),
                sub(d[1], d[3]),
            ];
            for (i, r) in r.iter().enumerate() {
                let cols = [r[0] - r[2], r[1] + r[2], r[2] - r[1], r[1] - r[3]];
                for (j, val) in cols.into_iter().enumerate() {
                    v[(i * 4 + j) * plane + c * count + t] = val;
                }
            }
        }
    }
}

fn add(a: [f32; 4], b: [f32; 4]) -> [f32; 4] {
    std::array::from_fn(|i| a[i] + b[i])
}

fn sub(a: [f32; 4], b: [f32; 4]) -> [f32; 4] {
    std::array::from_fn(|i| a[i] - b[i])
}

/// The 16 products `M_ξ = U_ξ V_ξ`, `(cout, cin) x (cin, count)`, into `[16][cout][count]`.
fn multiply(p: &Plan, u: &[f32], v: &[f32], m: &mut [f32], count: usize, par: Parallelism) {
    let (ci, co) = (p.cin, p.cout);
    for xi in 0..16 {
        // SAFETY: the slices hold exactly the matrices described by the sizes and strides.
        unsafe {
            gemm::gemm(
                co,
                count,
                ci,
                m[xi * co * count..].as_mut_ptr(),
                1,
                count as isize,
                false,
                u[xi * co * ci..].as_ptr(),
                1,
                ci as isize,
                v[xi * ci * count..].as_ptr(),
                1,
                count as isize,
                0.0,
                1.0,
                false,
                false,
                false,
                par,
            );
        }
    }
}

/// `A^T M A` plus bias for each output channel and tile, written into the output image `n`.
///
/// # Safety
/// No other thread writes the output pixels of these tiles of image `n`.
unsafe fn transform_output(
    p: &Plan,
    m: &[f32],
    bias: Option<&[f32]>,
    out: SharedOut,
    n: usize,
    first: usize,
    count: usize,
) {
    let plane = p.cout * count;
    for co in 0..p.cout {
        let b = bias.map_or(0.0, |b| b[co]);
        let base = (n * p.cout + co) * p.oh * p.ow;
        for t in 0..count {
            let at = |xi: usize| m[xi * plane + co * count + t];
            // A^T M: two rows of four.
            let s0: [f32; 4] = std::array::from_fn(|j| at(j) + at(4 + j) + at(8 + j));
            let s1: [f32; 4] = std::array::from_fn(|j| at(4 + j) - at(8 + j) - at(12 + j));
            let (ty, tx) = ((first + t) / p.tw, (first + t) % p.tw);
            for (i, s) in [s0, s1].iter().enumerate() {
                let y = 2 * ty + i;
                if y >= p.oh {
                    continue;
                }
                let vals = [s[0] + s[1] + s[2] + b, s[1] - s[2] - s[3] + b];
                for (j, val) in vals.into_iter().enumerate() {
                    let x = 2 * tx + j;
                    if x < p.ow {
                        out.write(base + y * p.ow + x, val);
                    }
                }
            }
        }
    }
}
