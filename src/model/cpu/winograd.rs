//! 3x3 stride-1 convolution by Winograd's minimal filtering F(4x4, 3x3) (Lavin & Gray, 2016):
//! each 4x4 output tile is `A^T [ sum_c (G g G^T) ⊙ (B^T d B) ] A` over 6x6 input tiles, so the
//! channel sum becomes 36 matrix multiplies with 4x fewer multiplications than im2col (the
//! interpolation points 0, ±1, ±2, ±1/2; in f32 the result stays within ~1e-6 of the direct
//! sum, relative to its largest value). Tiles are processed in blocks, one block per task on
//! rayon's pool.

use candle_core::{Result, Tensor};
use gemm::Parallelism;

use pulp::{Simd, WithSimd};

use super::vector_runs::{copy, copy_padded, fill_zero, load, store};
use super::ConvArgs;
use super::{
    lanes, pieces_per_block, run_jobs, vectorized, with_data, Scratch, SharedOut, MULTIPLY_ROWS,
};

/// Upper bound on one block's transformed input, in floats (2 MiB). With each channel's 36
/// points side by side (see [`transform_input`]), VGG16's 3x3 layers at 150 px, batch 13, took
/// 0.95x the time of 4 MiB blocks and the same as 1 MiB ones; 16 MiB blocks lost 1.08x to im2col
/// on 64-channel layers, and 512-channel ones read their transformed kernels again per block.
const MAX_BLOCK_FLOATS: usize = 1 << 19;
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
    // Blocks of a multiple of the multiply's rows (but an image's last): VGG16's 3x3 layers at
    // 150 px, batch 2 (a filter-pattern pass), 0.93x the time.
    let block = tiles
        .div_ceil(per_image)
        .next_multiple_of(MULTIPLY_ROWS)
        .min(tiles);
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
        let run = |bufs: &mut (Scratch, Scratch), job: usize, par: Parallelism| {
            let (n, b) = (job / plan.blocks_per_image(), job % plan.blocks_per_image());
            let first = b * plan.block;
            let count = plan.block.min(plan.tiles() - first);
            let image = &input[n * cin * h * w..][..cin * h * w];
            transform_input(&plan, image, first, count, &mut bufs.0);
            multiply(&plan, u, &bufs.0, &mut bufs.1, run_columns(count), par);
            // SAFETY: this job writes only the output pixels of its own tiles of image `n`.
            unsafe { transform_output(&plan, &bufs.1, bias.as_deref(), shared, n, first, count) };
        };
        // Both are written whole before they are read: the transform stores every run, the
        // multiply does not read its output.
        let buffers = || {
            (
                Scratch::take(POINTS * cin * run_columns(plan.block)),
                Scratch::take(POINTS * cout * run_columns(plan.block)),
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

/// `B^T d B` for one 6x6 window `d[row][column]`: the columns combined first, then each row.
/// (Column by column on single values: combining whole rows at once would copy arrays of
/// vectors, which compiles to `memcpy` calls.)
#[inline(always)]
fn input_tile<T: Copy + Lanes>(d: &[[T; SPAN]; SPAN]) -> [[T; SPAN]; SPAN] {
    let mut t = *d; // overwritten column by column
    for j in 0..SPAN {
        let column = input_points(std::array::from_fn(|i| d[i][j]));
        for (i, v) in column.iter().enumerate() {
            t[i][j] = *v;
        }
    }
    for row in t.iter_mut() {
        *row = input_points(*row);
    }
    t
}

/// `A^T m A` for one 6x6 tile of products `m[row][column]`: the 4x4 outputs, combined as in
/// [`input_tile`].
#[inline(always)]
fn output_tile<T: Copy + Lanes>(m: &[[T; SPAN]; SPAN]) -> [[T; TILE]; TILE] {
    let mut t = [m[0]; TILE]; // overwritten column by column
    for j in 0..SPAN {
        let column = output_points(std::array::from_fn(|i| m[i][j]));
        for (i, v) in column.iter().enumerate() {
            t[i][j] = *v;
        }
    }
    let mut out = [[m[0][0]; TILE]; TILE]; // overwritten row by row
    for (o, row) in out.iter_mut().zip(t.iter()) {
        *o = output_points(*row);
    }
    out
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

// Indexed loops, not iterators: an array's `into_iter` copies it, and for rows of vectors
// the copy is a `memcpy` call per operation.
impl<T: Lanes + Copy, const N: usize> Lanes for [T; N] {
    #[inline(always)]
    fn add(mut self, o: Self) -> Self {
        for i in 0..N {
            self[i] = self[i].add(o[i]);
        }
        self
    }
    #[inline(always)]
    fn sub(mut self, o: Self) -> Self {
        for i in 0..N {
            self[i] = self[i].sub(o[i]);
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

/// The most tiles a run holds (the widest vectors' lanes).
const MAX_RUN: usize = 16;

/// Columns a block's transformed matrices have for its `count` tiles: one per tile, then
/// zeros up to a whole run of the widest vectors, so that every run is whole (a vector's lanes
/// come out of the shuffles in an order of their own, which only whole runs undo).
fn run_columns(count: usize) -> usize {
    count.next_multiple_of(MAX_RUN)
}

/// One of `S`'s vectors, one tile per lane, with the arithmetic the transforms use.
#[derive(Clone, Copy)]
struct Vector<S: Simd>(S, S::f32s);

impl<S: Simd> Lanes for Vector<S> {
    #[inline(always)]
    fn add(self, o: Self) -> Self {
        Vector(self.0, self.0.add_f32s(self.1, o.1))
    }
    #[inline(always)]
    fn sub(self, o: Self) -> Self {
        Vector(self.0, self.0.sub_f32s(self.1, o.1))
    }
    #[inline(always)]
    fn scale(self, k: f32) -> Self {
        Vector(self.0, self.0.mul_f32s(self.1, self.0.splat_f32s(k)))
    }
}

/// Tiles `at..at + len` (offsets from the first tile asked for), all in tile row `ty` from
/// tile column `tx` on.
#[derive(Debug, Clone, Copy)]
struct Segment {
    ty: usize,
    tx: usize,
    at: usize,
    len: usize,
}

/// Tiles `first..first + count` as [`Segment`]s, one per tile row they touch.
fn segments(p: &Plan, first: usize, count: usize) -> impl Iterator<Item = Segment> + '_ {
    let mut t = first;
    std::iter::from_fn(move || {
        let at = t - first;
        (at < count).then(|| {
            let (ty, tx) = (t / p.tw, t % p.tw);
            let len = (p.tw - tx).min(count - at);
            t += len;
            Segment { ty, tx, at, len }
        })
    })
}

/// `B^T d B` for each channel and each tile `first..first + count` of one image, laid out
/// `[cin][36][run_columns(count)]`: each channel's 36 points side by side, so that its runs
/// are written into one stretch of memory rather than into 36 planes a block apart (0.93x the
/// layer's time on VGG16 at 150 px). For each channel the six window rows of every tile are
/// first laid side by side (four columns a tile, padding included, tile rows one after
/// another), so that a run of tiles (one per vector lane) is gathered from six stretches by
/// vector shuffles, transformed with vector arithmetic and written as 36 whole runs.
fn transform_input(p: &Plan, image: &[f32], first: usize, count: usize, v: &mut [f32]) {
    vectorized(InputRuns {
        p,
        image,
        first,
        count,
        v,
        // Written whole by `window_rows` before any run reads it.
        windows: &mut Scratch::take(2 * SPAN * TILE * run_columns(count)),
    })
}

struct InputRuns<'a> {
    p: &'a Plan,
    image: &'a [f32],
    first: usize,
    count: usize,
    v: &'a mut [f32],
    /// Window columns 0-3 of every tile for six rows, then columns 4-7 (see [`window_rows`]).
    windows: &'a mut [f32],
}

impl WithSimd for InputRuns<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: Simd>(self, simd: S) {
        let (p, count) = (self.p, self.count);
        let columns = run_columns(count);
        let (left, right) = self.windows.split_at_mut(SPAN * TILE * columns);
        for c in 0..p.cin {
            let src = &self.image[c * p.h * p.w..][..p.h * p.w];
            window_rows(simd, p, src, self.first, count, left, right);
            for r in (0..columns).step_by(lanes::<S>()) {
                let d = gather_run(simd, left, right, TILE * columns, TILE * r);
                // B^T d: combinations of rows; then (B^T d) B: the same on each row's
                // columns.
                for (i, row) in input_tile(&d).iter().enumerate() {
                    for (j, vals) in row.iter().enumerate() {
                        store::<S>(
                            &mut self.v[(c * POINTS + i * SPAN + j) * columns + r..],
                            vals.1,
                        );
                    }
                }
            }
        }
    }
}

/// For each of the six rows of the windows of tiles `first..first + count`: every tile's
/// window columns 0-3 side by side into `left`, and columns 4-7 into `right` (columns 4 and 5
/// are the window's last two; a tile row's last tile reads them from past its own four), zero
/// in the padding and after the last tile. One row of each is `TILE * run_columns(count)`
/// long.
#[inline(always)]
fn window_rows<S: Simd>(
    simd: S,
    p: &Plan,
    src: &[f32],
    first: usize,
    count: usize,
    left: &mut [f32],
    right: &mut [f32],
) {
    let line = TILE * run_columns(count);
    for i in 0..SPAN {
        fill_zero(simd, &mut left[i * line..][TILE * count..line]);
        fill_zero(simd, &mut right[i * line..][TILE * count..line]);
    }
    // Tile row by tile row, its six window rows one after another: the image is read in order.
    for s in segments(p, first, count) {
        for i in 0..SPAN {
            let y = (TILE * s.ty + i) as isize - p.pad as isize;
            let (l, r) = (
                &mut left[i * line + TILE * s.at..][..TILE * s.len],
                &mut right[i * line + TILE * s.at..][..TILE * s.len],
            );
            if y < 0 || y >= p.h as isize {
                fill_zero(simd, l);
                fill_zero(simd, r);
                continue;
            }
            let row = &src[y as usize * p.w..][..p.w];
            let x = (TILE * s.tx) as isize - p.pad as isize;
            copy_padded(simd, row, x, l);
            copy_padded(simd, row, x + TILE as isize, r);
        }
    }
}

/// The 6x6 input windows of the run of tiles at column `x` of the window rows (`line` apart),
/// as `d[row][column]` with one tile per lane, split into columns by vector shuffles. (Loops,
/// not closures: a closure is compiled without the vector instructions of its caller.)
#[inline(always)]
fn gather_run<S: Simd>(
    simd: S,
    left: &[f32],
    right: &[f32],
    line: usize,
    x: usize,
) -> [[Vector<S>; SPAN]; SPAN] {
    let zero = Vector(simd, simd.splat_f32s(0.0));
    let mut d = [[zero; SPAN]; SPAN];
    for (i, row) in d.iter_mut().enumerate() {
        let [c0, c1, c2, c3] = columns(simd, &left[i * line + x..]);
        let [c4, c5, _, _] = columns(simd, &right[i * line + x..]);
        for (d, c) in row.iter_mut().zip([c0, c1, c2, c3, c4, c5]) {
            d.1 = c;
        }
    }
    d
}

/// The four columns of a run of tiles laid side by side from the start of `line` (column `j`
/// of tile `l` at `4 l + j`), one tile per lane: the lanes come in the shuffles' own order,
/// which [`woven`] undoes.
#[inline(always)]
fn columns<S: Simd>(simd: S, line: &[f32]) -> [S::f32s; TILE] {
    let stretch = &line[..TILE * lanes::<S>()];
    // SAFETY: `stretch` holds exactly four vectors' values; the read is unaligned.
    let quad = unsafe { stretch.as_ptr().cast::<[S::f32s; TILE]>().read_unaligned() };
    simd.deinterleave_shfl_f32s(quad)
}

/// Four columns of a run of tiles, in the lane order of [`columns`], woven into one stretch
/// (column `j` of tile `l` at `4 l + j`).
#[inline(always)]
fn woven<S: Simd>(simd: S, cols: [S::f32s; TILE]) -> [S::f32s; TILE] {
    simd.interleave_shfl_f32s(cols)
}

/// The 36 products `M_ξ = U_ξ V_ξ`, `(cout, cin) x (cin, count)`, into `[cout][36][count]`
/// (the rows of `V_ξ` and `M_ξ` lie `36 count` apart).
fn multiply(p: &Plan, u: &[f32], v: &[f32], m: &mut [f32], count: usize, par: Parallelism) {
    let (ci, co) = (p.cin, p.cout);
    for xi in 0..POINTS {
        // SAFETY: the slices hold exactly the matrices described by the sizes and strides.
        unsafe {
            gemm::gemm(
                co,
                count,
                ci,
                m[xi * count..].as_mut_ptr(),
                1,
                (POINTS * count) as isize,
                false,
                u[xi * co * ci..].as_ptr(),
                1,
                ci as isize,
                v[xi * count..].as_ptr(),
                1,
                (POINTS * count) as isize,
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
/// whole runs of tiles (one per vector lane), read as 36 runs, transformed with vector
/// arithmetic, woven into four output rows and copied to the tile rows the run covers.
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
    fn with_simd<S: Simd>(self, simd: S) {
        let (p, count) = (self.p, self.count);
        let columns = run_columns(count);
        for co in 0..p.cout {
            let b = simd.splat_f32s(self.bias.map_or(0.0, |b| b[co]));
            let base = (self.n * p.cout + co) * p.oh * p.ow;
            for r in (0..count).step_by(lanes::<S>()) {
                // The 36 runs of products (the initial value is overwritten).
                let mut mm = [[Vector(simd, b); SPAN]; SPAN];
                for (i, row) in mm.iter_mut().enumerate() {
                    for (j, v) in row.iter_mut().enumerate() {
                        v.1 = load::<S>(&self.m[(co * POINTS + i * SPAN + j) * columns + r..]);
                    }
                }
                // A^T M A, each row woven into an output row of the run (lane `l`, column `j`
                // at `4 l + j`).
                let mut rows = [[b; TILE]; TILE]; // overwritten row by row
                let tile = output_tile(&mm);
                for (i, woven_row) in rows.iter_mut().enumerate() {
                    let [c0, c1, c2, c3] = tile[i];
                    *woven_row = woven(
                        simd,
                        [
                            simd.add_f32s(c0.1, b),
                            simd.add_f32s(c1.1, b),
                            simd.add_f32s(c2.1, b),
                            simd.add_f32s(c3.1, b),
                        ],
                    );
                }
                let run = lanes::<S>().min(count - r);
                for s in segments(p, self.first + r, run) {
                    let x = TILE * s.tx;
                    let width = (TILE * s.len).min(p.ow - x);
                    for (i, row) in rows.iter().enumerate() {
                        let y = TILE * s.ty + i;
                        if y >= p.oh {
                            break;
                        }
                        // SAFETY: these tiles' pixels are written by this call only.
                        let dst = unsafe {
                            std::slice::from_raw_parts_mut(self.out.at(base + y * p.ow + x), width)
                        };
                        if width == TILE * lanes::<S>() {
                            // The whole run in one tile row: four vectors' writes.
                            for (k, v) in row.iter().enumerate() {
                                store::<S>(&mut dst[k * lanes::<S>()..], *v);
                            }
                        } else {
                            let values = pulp::bytemuck::cast_slice::<S::f32s, f32>(row);
                            copy(simd, &values[TILE * s.at..][..width], dst);
                        }
                    }
                }
            }
        }
    }
}
