//! 3x3 stride-1 convolution by Winograd's minimal filtering F(4x4, 3x3) (Lavin & Gray, 2016):
//! each 4x4 output tile is `A^T [ sum_c (G g G^T) ⊙ (B^T d B) ] A` over 6x6 input tiles, so the
//! channel sum becomes 36 matrix multiplies with 4x fewer multiplications than im2col (the
//! interpolation points 0, ±1, ±2, ±1/2; in f32 the result stays within ~1e-6 of the direct
//! sum, relative to its largest value). Tiles are processed in blocks, one block per task on
//! rayon's pool.

use candle_core::{Result, Tensor};
use gemm::Parallelism;

use pulp::{Simd, WithSimd};

use super::ConvArgs;
use super::{pieces_per_block, run_jobs, vectorized, with_data, SharedOut};

/// Upper bound on one block's transformed input, in floats (4 MiB): measured against 16 MiB and
/// 2 MiB, the best on 64-channel layers (0.72x im2col's time, 1.08x with 16 MiB) without losing
/// on 512-channel ones, whose transformed kernels are read again for every block.
const MAX_BLOCK_FLOATS: usize = 1 << 20;
/// Fewest tiles worth a block of their own.
const MIN_BLOCK: usize = 32;
/// Output tile side; input tile side; products per tile pair (one matrix multiply each).
const TILE: usize = 4;
const SPAN: usize = TILE + 2;
const POINTS: usize = SPAN * SPAN;

/// Whether the Winograd kernel computes this convolution of `x`: a batch of several images
/// (filter patterns' gradient ascent, Score-CAM's masked passes, the metrics' curves), 3x3,
/// stride 1, no dilation, no groups, and wide and large enough for the transforms to pay.
///
/// One image (a prediction, a map) takes im2col, whose sums are in the order PyTorch's are:
/// Winograd's rounding (~1e-6 of the largest value) is far below what a prediction shows, but
/// it can flip a near-tie of max pooling, and a Grad-CAM map behind one differs from
/// pytorch-grad-cam's (VGG16 on scikit-image's astronaut: 6.5e-3 with Winograd, 7.9e-7 without).
///
/// Measured on every 3x3 stride-1 layer of VGG16 and ResNet50 at 150 and 224 pixels, batch 8,
/// against im2col (with the transformed kernels kept): it wins on every one with 64 channels or
/// more in and out, an output of 12x12 or more, and 25 tiles or more in the batch (0.42-0.78x
/// im2col's time); it loses on 7x7 and 9x9 outputs, where every tile touches the padding
/// (1.3-2x), and on 3 input channels (4x).
pub fn applies(x: &Tensor, conv: &ConvArgs) -> bool {
    let (d, s) = (conv.weight.dims(), x.dims());
    let Some(u) = conv.window.uniform() else {
        return false;
    };
    if d.len() != 4 || s.len() != 4 {
        return false;
    }
    let out = |size: usize| (size + 2 * u.padding).saturating_sub(2);
    let (oh, ow) = (out(s[2]), out(s[3]));
    s[0] >= 2
        && d[2] == 3
        && d[3] == 3
        && u.stride == 1
        && u.dilation == 1
        && conv.groups == 1
        && d[0] >= 64
        && d[1] >= 64
        && oh >= 12
        && ow >= 12
        && s[0] * oh.div_ceil(TILE) * ow.div_ceil(TILE) >= 25
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

    /// Where the input windows of tiles `first..first + count` start (row, column), when they
    /// are a whole run along one tile row and lie inside the image (no padding read) and
    /// their outputs inside the output.
    fn inner_run(&self, first: usize, count: usize) -> Option<(usize, usize)> {
        let (ty, tx) = (first / self.tw, first % self.tw);
        let (y0, x0) = (
            (TILE * ty).checked_sub(self.pad)?,
            (TILE * tx).checked_sub(self.pad)?,
        );
        (count == RUN
            && tx + RUN <= self.tw
            && y0 + SPAN <= self.h
            && x0 + TILE * RUN + 2 <= self.w
            && TILE * (ty + 1) <= self.oh
            && TILE * (tx + RUN) <= self.ow)
            .then_some((y0, x0))
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
    let (th, tw) = (oh.div_ceil(TILE), ow.div_ceil(TILE));
    let threads = rayon::current_num_threads();
    let tiles = th * tw;
    let by_memory = (POINTS * cin * tiles).div_ceil(MAX_BLOCK_FLOATS);
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
    let u = conv
        .prepared
        .winograd(|| with_data(conv.weight, |g| Ok(transform_kernels(g, cout, cin))))?;
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
            multiply(&plan, u, &bufs.0, &mut bufs.1, count, par);
            // SAFETY: this job writes only the output pixels of its own tiles of image `n`.
            unsafe { transform_output(&plan, &bufs.1, bias.as_deref(), shared, n, first, count) };
        };
        let buffers = || {
            (
                vec![0f32; POINTS * cin * plan.block],
                vec![0f32; POINTS * cout * plan.block],
            )
        };
        run_jobs(jobs, buffers, run);
        Ok(())
    })?;
    Tensor::from_vec(out, (batch, cout, oh, ow), x.device())
}

/// `G g G^T` for every (output, input) channel pair, laid out `[36][cout][cin]`. Pairs go in
/// runs of [`KERNEL_RUN`], each run's 36 points gathered first and then written as 36
/// contiguous rows: the planes lie a power of two apart, so writing them point by point would
/// send every write to the same cache set.
fn transform_kernels(g: &[f32], cout: usize, cin: usize) -> Vec<f32> {
    let mut u = vec![0f32; POINTS * cout * cin];
    let plane = cout * cin;
    let mut run = [[0f32; KERNEL_RUN]; POINTS];
    for (r, kernels) in g.chunks(9 * KERNEL_RUN).enumerate() {
        let pairs = kernels.len() / 9;
        for (p, k) in kernels.chunks_exact(9).enumerate() {
            let k: [[f32; 3]; 3] = std::array::from_fn(|i| [k[3 * i], k[3 * i + 1], k[3 * i + 2]]);
            // G k (6x3), then each row times G^T.
            for (i, row) in kernel_points(k).iter().enumerate() {
                for (j, v) in kernel_points(*row).into_iter().enumerate() {
                    run[i * SPAN + j][p] = v;
                }
            }
        }
        for (xi, values) in run.iter().enumerate() {
            u[xi * plane + r * KERNEL_RUN..][..pairs].copy_from_slice(&values[..pairs]);
        }
    }
    u
}

/// Channel pairs transformed together by [`transform_kernels`].
const KERNEL_RUN: usize = 64;

/// `G x` for three values (or rows) `x`: the kernel at the six interpolation points.
#[inline(always)]
fn kernel_points<T: Copy + Lanes>(x: [T; 3]) -> [T; SPAN] {
    let [a, b, c] = x;
    [
        a.scale(0.25),
        a.add(b).add(c).scale(-1.0 / 6.0),
        a.sub(b).add(c).scale(-1.0 / 6.0),
        a.scale(1.0 / 24.0)
            .add(b.scale(1.0 / 12.0))
            .add(c.scale(1.0 / 6.0)),
        a.scale(1.0 / 24.0)
            .sub(b.scale(1.0 / 12.0))
            .add(c.scale(1.0 / 6.0)),
        c,
    ]
}

/// `B^T x` for six values (or rows) `x`.
#[inline(always)]
fn input_points<T: Copy + Lanes>(d: [T; SPAN]) -> [T; SPAN] {
    [
        d[0].scale(4.0).sub(d[2].scale(5.0)).add(d[4]),
        d[4].add(d[3]).sub(d[1].add(d[2]).scale(4.0)),
        d[4].sub(d[3]).add(d[1].sub(d[2]).scale(4.0)),
        d[4].sub(d[2]).add(d[3].sub(d[1]).scale(2.0)),
        d[4].sub(d[2]).sub(d[3].sub(d[1]).scale(2.0)),
        d[1].scale(4.0).sub(d[3].scale(5.0)).add(d[5]),
    ]
}

/// `A^T x` for six values (or rows) `x`: the four outputs.
#[inline(always)]
fn output_points<T: Copy + Lanes>(m: [T; SPAN]) -> [T; TILE] {
    let (s1, d1) = (m[1].add(m[2]), m[1].sub(m[2]));
    let (s2, d2) = (m[3].add(m[4]), m[3].sub(m[4]));
    [
        m[0].add(s1).add(s2),
        d1.add(d2.scale(2.0)),
        s1.add(s2.scale(4.0)),
        d1.add(d2.scale(8.0)).add(m[5]),
    ]
}

/// What the transforms compute with: single values, or rows of them.
trait Lanes {
    fn add(self, o: Self) -> Self;
    fn sub(self, o: Self) -> Self;
    fn scale(self, k: f32) -> Self;
}

impl Lanes for f32 {
    #[inline(always)]
    fn add(self, o: f32) -> f32 {
        self + o
    }
    #[inline(always)]
    fn sub(self, o: f32) -> f32 {
        self - o
    }
    #[inline(always)]
    fn scale(self, k: f32) -> f32 {
        self * k
    }
}

impl<T: Lanes + Copy, const N: usize> Lanes for [T; N] {
    #[inline(always)]
    fn add(mut self, o: Self) -> Self {
        for (a, b) in self.iter_mut().zip(o) {
            *a = a.add(b);
        }
        self
    }
    #[inline(always)]
    fn sub(mut self, o: Self) -> Self {
        for (a, b) in self.iter_mut().zip(o) {
            *a = a.sub(b);
        }
        self
    }
    #[inline(always)]
    fn scale(mut self, k: f32) -> Self {
        for a in self.iter_mut() {
            *a = a.scale(k);
        }
        self
    }
}

/// Tiles transformed together, one in each vector lane.
const RUN: usize = 16;

/// One value per tile of a run.
type Run = [f32; RUN];

/// `B^T d B` for each channel and each tile `first..first + count` of one image, laid out
/// `[36][cin][count]` (row stride `count`): runs of [`RUN`] tiles, gathered into one lane each,
/// transformed with vector arithmetic and written as 36 contiguous runs.
fn transform_input(p: &Plan, image: &[f32], first: usize, count: usize, v: &mut [f32]) {
    vectorized(InputRuns {
        p,
        image,
        first,
        count,
        v,
    })
}

struct InputRuns<'a> {
    p: &'a Plan,
    image: &'a [f32],
    first: usize,
    count: usize,
    v: &'a mut [f32],
}

impl WithSimd for InputRuns<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: Simd>(self, _: S) {
        let (p, count) = (self.p, self.count);
        let plane = p.cin * count;
        for c in 0..p.cin {
            let src = &self.image[c * p.h * p.w..][..p.h * p.w];
            for t0 in (0..count).step_by(RUN) {
                let n = RUN.min(count - t0);
                let d = match p.inner_run(self.first + t0, n) {
                    Some((y0, x0)) => gather_run(p, src, y0, x0),
                    None => {
                        let mut d = [[[0f32; RUN]; SPAN]; SPAN];
                        for l in 0..n {
                            gather_tile(p, src, self.first + t0 + l, &mut d, l);
                        }
                        d
                    }
                };
                // B^T d: combinations of rows; then (B^T d) B: the same on each row's columns.
                for (i, rows) in input_points(d).into_iter().enumerate() {
                    for (j, vals) in input_points(rows).into_iter().enumerate() {
                        let dst = &mut self.v[(i * SPAN + j) * plane + c * count + t0..];
                        match <&mut Run>::try_from(&mut dst[..n]) {
                            Ok(dst) => *dst = vals,
                            Err(_) => dst[..n].copy_from_slice(&vals[..n]),
                        }
                    }
                }
            }
        }
    }
}

/// The 6x6 input windows of a run of [`RUN`] tiles along one tile row, all inside the image,
/// the first at row `y0`, column `x0`: each window row is read from one stretch of the line.
#[inline(always)]
fn gather_run(p: &Plan, src: &[f32], y0: usize, x0: usize) -> [[Run; SPAN]; SPAN] {
    let mut d = [[[0f32; RUN]; SPAN]; SPAN];
    for (i, row) in d.iter_mut().enumerate() {
        let line: &[f32; TILE * RUN + 2] = src[(y0 + i) * p.w + x0..][..TILE * RUN + 2]
            .try_into()
            .expect("a run's stretch");
        // Columns 0-3 of every window: one pass over the stretch, four values a tile (the
        // compiler turns the interleaved reads into vector shuffles).
        for l in 0..RUN {
            for j in 0..TILE {
                row[j][l] = line[TILE * l + j];
            }
        }
        // Columns 4 and 5 of a window are columns 0 and 1 of the next one.
        for j in 0..2 {
            let (head, tail) = row.split_at_mut(TILE);
            tail[j][..RUN - 1].copy_from_slice(&head[j][1..]);
            tail[j][RUN - 1] = line[TILE * RUN + j];
        }
    }
    d
}

/// The 6x6 input window of tile `t` into lane `l` of `d`, zero where it falls in the padding.
#[inline(always)]
fn gather_tile(p: &Plan, src: &[f32], t: usize, d: &mut [[Run; SPAN]; SPAN], l: usize) {
    let (ty, tx) = (t / p.tw, t % p.tw);
    let (y0, x0) = (
        (TILE * ty) as isize - p.pad as isize,
        (TILE * tx) as isize - p.pad as isize,
    );
    for (i, row) in d.iter_mut().enumerate() {
        let y = y0 + i as isize;
        if y < 0 || y >= p.h as isize {
            continue;
        }
        let line = &src[y as usize * p.w..][..p.w];
        if x0 >= 0 && x0 as usize + SPAN <= p.w {
            for (j, v) in line[x0 as usize..][..SPAN].iter().enumerate() {
                row[j][l] = *v;
            }
        } else {
            for (j, lane) in row.iter_mut().enumerate() {
                let x = x0 + j as isize;
                if x >= 0 && x < p.w as isize {
                    lane[l] = line[x as usize];
                }
            }
        }
    }
}

/// The 36 products `M_ξ = U_ξ V_ξ`, `(cout, cin) x (cin, count)`, into `[36][cout][count]`.
fn multiply(p: &Plan, u: &[f32], v: &[f32], m: &mut [f32], count: usize, par: Parallelism) {
    let (ci, co) = (p.cin, p.cout);
    for xi in 0..POINTS {
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

/// `A^T M A` plus bias for each output channel and tile, written into the output image `n`:
/// runs of [`RUN`] tiles, read as 36 contiguous runs and transformed with vector arithmetic.
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
    vectorized(OutputRuns {
        p,
        m,
        bias,
        out,
        n,
        first,
        count,
    })
}

struct OutputRuns<'a> {
    p: &'a Plan,
    m: &'a [f32],
    bias: Option<&'a [f32]>,
    out: SharedOut,
    n: usize,
    first: usize,
    count: usize,
}

impl WithSimd for OutputRuns<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: Simd>(self, _: S) {
        let (p, count) = (self.p, self.count);
        let plane = p.cout * count;
        for co in 0..p.cout {
            let b = self.bias.map_or(0.0, |b| b[co]);
            let base = (self.n * p.cout + co) * p.oh * p.ow;
            for t0 in (0..count).step_by(RUN) {
                let n = RUN.min(count - t0);
                let mut mm = [[[0f32; RUN]; SPAN]; SPAN];
                for (i, rows) in mm.iter_mut().enumerate() {
                    for (j, vals) in rows.iter_mut().enumerate() {
                        let src = &self.m[(i * SPAN + j) * plane + co * count + t0..][..n];
                        match <&Run>::try_from(src) {
                            Ok(src) => *vals = *src,
                            Err(_) => vals[..n].copy_from_slice(src),
                        }
                    }
                }
                let inner = p.inner_run(self.first + t0, n);
                // A^T M: four rows of six; then each row times A.
                for (i, rows) in output_points(mm).into_iter().enumerate() {
                    let vals = output_points(rows);
                    if inner.is_some() {
                        // One stretch of the output row: lane `l`, column `j` at `4 l + j`.
                        let t = self.first + t0;
                        let at = base + (TILE * (t / p.tw) + i) * p.ow + TILE * (t % p.tw);
                        // SAFETY: these tiles' pixels are written by this call only.
                        let dst = unsafe { &mut *(self.out.at(at) as *mut [f32; TILE * RUN]) };
                        for l in 0..RUN {
                            for j in 0..TILE {
                                dst[TILE * l + j] = vals[j][l] + b;
                            }
                        }
                        continue;
                    }
                    for l in 0..n {
                        let (ty, tx) = ((self.first + t0 + l) / p.tw, (self.first + t0 + l) % p.tw);
                        let y = TILE * ty + i;
                        if y >= p.oh {
                            continue;
                        }
                        let width = TILE.min(p.ow - TILE * tx);
                        // SAFETY: this tile's pixels are written by this call only.
                        let dst = unsafe {
                            std::slice::from_raw_parts_mut(
                                self.out.at(base + y * p.ow + TILE * tx),
                                width,
                            )
                        };
                        for (d, v) in dst.iter_mut().zip(&vals) {
                            *d = v[l] + b;
                        }
                    }
                }
            }
        }
    }
}
