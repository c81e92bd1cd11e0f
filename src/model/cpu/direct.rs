//! Direct convolution with the output channels in the vector lanes, for deep layers' maps (one
//! image or a few): a register block is 64 output channels by a run of up to 6 output pixels
//! along a row (AVX-512; 16 by 6 with AVX2), and every kernel tap of every input channel adds
//! its weights (one vector per 16 channels) times each pixel's input value (broadcast from the
//! zero-padded input, strided and dilated reads alike) to the block. No columns are built:
//! where im2col writes and reads back `kh * kw` copies of the input, this kernel reads the
//! input where it lies, and a 7x7 map's 49 pixels are runs of 4 and 3, where im2col's multiply
//! (pixels in the lanes) pads them to 64. The weights are packed once per convolution into
//! blocks of channels (`[block][channel][kh][kw][64]`) and kept with it (see
//! [`super::Prepared`]). Each output sums its taps in the order of the weights (channel, kernel
//! row, kernel column), as im2col's multiply does.

use candle_core::{Result, Tensor};
use pulp::{Simd, WithSimd};
use rayon::prelude::*;

use super::vector_runs::{copy_padded, load};
use super::{lanes, vectorized, with_data, ConvArgs, Scratch, SharedOut};
use crate::model::ops::geometry::Axis;

/// Taps of one pass over a register block (input channels times kernel taps, rounded down to
/// whole channels): the block's weights (256 by 64 channels, 64 KiB) stay in the core's L2
/// cache, the input values the run reads in L1, while a group of output-channel blocks goes by.
const DEPTH: usize = 256;
/// Taps of one pass where the runs are short (see [`Geometry::short_runs`]): the block's
/// weights (128 by 64 channels, 32 KiB) stay in the core's L1 cache while the block goes
/// through every run of its chunk, one block after another. With a run of 3 or 4 pixels a
/// tap's weights take 12 or 16 multiply-adds, too few to read them from L2 each time (7x7
/// output maps, 512 channels on 2 threads: 0.88-0.89x the time with [`DEPTH`] and groups of
/// blocks, for the 3x3 of one image and of 8, and the 3x3/2 down to them).
const SHORT_RUN_DEPTH: usize = 128;
/// Weights a group of output-channel blocks reads per pass, in floats (512 KiB, half the
/// core's L2 cache).
const MAX_GROUP_FLOATS: usize = 1 << 17;
/// Partial sums a chunk of runs keeps from one pass to the next, in floats (128 KiB).
const MAX_SUMS_FLOATS: usize = 1 << 15;

/// Whether the direct kernel computes this convolution of `x`: ungrouped, on a CPU with AVX2
/// or AVX-512, output channels that fill its register blocks, 128 taps or more per output
/// (input channels times kernel taps), outputs of 36 pixels or more, and a kernel wider than
/// 1x1, or a 1x1 that is strided, over maps of 14x14 or fewer pixels, or over one image with
/// 256 input channels or more.
///
/// Measured against im2col's multiply on every convolution of VGG16 and ResNet50 at 224
/// pixels, batch 1 and 8, taking turns (`direct/im2col` time, medians of 5-9 turns): 0.63-0.99x
/// on every kernel wider than 1x1 with 128 taps or more (0.63-0.85x on the 14x14 and 7x7 maps
/// and the strided 3x3s, where im2col's multiply pads its pixels to 64; ResNet50's stem
/// 0.89-0.91x), 0.81-0.97x on the stride-1 1x1s of batches of 14x14 and 7x7 maps, and
/// 0.77-0.96x on the strided 1x1s of one image or a batch (which im2col splits into phase
/// planes first, and this kernel gathers into dense planes, whose runs cross rows); for the
/// stride-1 1x1s of one image see [`MIN_POINTWISE_TAPS`]. It loses on VGG16's first layer (27
/// taps: 2.1x, where writing the channel-major sums one value at a time is a large share of
/// the work), on 1x1s of 64 taps (1.2-1.6x), and on the stride-1 1x1s of batches of 28x28 and
/// 56x56 maps (1.02-1.22x), which im2col multiplies in place.
pub fn applies(x: &Tensor, conv: &ConvArgs) -> bool {
    let (d, s) = (conv.weight.dims(), x.dims());
    if d.len() != 4 || s.len() != 4 || conv.groups != 1 {
        return false;
    }
    // Blocks of output channels padded by less than an eighth (EfficientNet-B0's projections
    // to 24, 40 and 112 channels are a block of 64 with 40, 24 and 16 lanes idle: its forward
    // took 1.04-1.13x the time with them, MobileNetV3-large's 1.07x with its two to 112).
    let Some(width) = width() else {
        return false;
    };
    if 7 * d[0].next_multiple_of(width) >= 8 * d[0] {
        return false;
    }
    let taps = d[2] * d[3];
    if s[1] * taps < MIN_TAPS {
        return false;
    }
    let pixels = conv.window.output((s[2], s[3])).map_or(0, |(h, w)| h * w);
    let strided = conv.window.h.stride > 1 || conv.window.w.stride > 1;
    let small_maps = pixels <= MAX_POINTWISE_PIXELS;
    let deep = s[0] == 1 && s[1] >= MIN_POINTWISE_TAPS;
    let pointwise = strided || small_maps || deep;
    pixels >= MIN_PIXELS && (taps > 1 || pointwise)
}

/// Fewest taps per output (input channels times kernel taps) the direct kernel takes.
const MIN_TAPS: usize = 128;
/// Fewest output pixels per image the direct kernel takes: six runs (the 1x1 maps of
/// squeeze-and-excitation are one pixel, a run of one, its weights read for one multiply-add
/// each; MobileNetV3-large's forward took 1.06x the time with them).
const MIN_PIXELS: usize = 6 * RUN;
/// Most output pixels per image of a stride-1 1x1 convolution the direct kernel takes (larger
/// maps im2col's multiply reads in place), unless it is one image's 1x1 of
/// [`MIN_POINTWISE_TAPS`] input channels or more.
const MAX_POINTWISE_PIXELS: usize = 14 * 14;
/// Fewest input channels of one image's stride-1 1x1 over maps larger than
/// [`MAX_POINTWISE_PIXELS`] the direct kernel takes: with fewer, writing its channel-major
/// sums costs more than the multiply-adds save (2 threads, against im2col's multiply cut
/// along output channels: 0.91-1.03x the time with 256-512 channels, 1.0-1.12x with 128-192).
const MIN_POINTWISE_TAPS: usize = 256;

/// Output channels per register block on this CPU: 64 with AVX-512, 16 with AVX2 (four and two
/// vectors), `None` with narrower vectors, where im2col's multiply serves better.
pub fn width() -> Option<usize> {
    struct Width;
    impl WithSimd for Width {
        type Output = Option<usize>;
        #[inline(always)]
        fn with_simd<S: Simd>(self, _: S) -> Option<usize> {
            match lanes::<S>() {
                16 => Some(16 * AVX512_VECTORS),
                8 => Some(8 * AVX2_VECTORS),
                _ => None,
            }
        }
    }
    vectorized(Width)
}

/// The most output channels a register block holds (AVX-512's).
const MAX_CHANNELS: usize = 16 * AVX512_VECTORS;
/// Vectors of output channels in a register block, with AVX-512 and with AVX2.
const AVX512_VECTORS: usize = 4;
const AVX2_VECTORS: usize = 2;
/// Pixels in a register block (at most: a run along an output row). With a vector of weights
/// per vector of channels and a broadcast input value, the sums fill the registers: 24 sums,
/// 4 weights and 1 value of AVX-512's 32 (7 pixels spill sums to the stack: 0.9x the rate),
/// 12, 2 and 1 of AVX2's 16.
const RUN: usize = 6;

/// Weights `(out_channels, in_channels, kh, kw)` packed in blocks of [`Packed::width`] output
/// channels, each laid out `[in_channel][kh][kw][width]`, the last block padded with zeros.
#[derive(Debug)]
pub struct Packed {
    data: Vec<f32>,
    rows: usize,
    depth: usize,
    width: usize,
}

impl Packed {
    /// `weight` (`rows` output channels of `depth` taps) packed for this CPU's vectors, or
    /// `None` where it has neither AVX-512 nor AVX2 (see [`width`]).
    pub fn new(weight: &[f32], rows: usize, depth: usize) -> Option<Packed> {
        Some(Packed::with_width(weight, rows, depth, width()?))
    }

    /// `weight` packed in blocks of `width` rows.
    fn with_width(weight: &[f32], rows: usize, depth: usize, width: usize) -> Packed {
        assert_eq!(weight.len(), rows * depth, "weights of {rows} x {depth}");
        let mut data = vec![0f32; rows.div_ceil(width) * depth * width];
        for (b, block) in data.chunks_exact_mut(depth * width).enumerate() {
            for r in 0..width.min(rows - b * width) {
                let src = &weight[(b * width + r) * depth..][..depth];
                for (k, v) in src.iter().enumerate() {
                    block[k * width + r] = *v;
                }
            }
        }
        Packed {
            data,
            rows,
            depth,
            width,
        }
    }

    fn blocks(&self) -> usize {
        self.rows.div_ceil(self.width)
    }

    /// Block `b`'s weights from tap `k` on.
    fn at(&self, b: usize, k: usize) -> *const f32 {
        self.data[(b * self.depth + k) * self.width..].as_ptr()
    }
}

/// Sizes of one convolution and of the input it reads: the input padded with zeros where the
/// window reaches past it (or the input itself where it does not).
#[derive(Debug, Clone, Copy)]
struct Geometry {
    batch: usize,
    cin: usize,
    oh: usize,
    ow: usize,
    /// The kernel's rows and columns.
    kh: usize,
    kw: usize,
    /// Read planes: row length, and floats per plane.
    row: usize,
    plane: usize,
    stride: (usize, usize),
    dilation: (usize, usize),
}

impl Geometry {
    fn runs_per_row(&self) -> usize {
        self.ow.div_ceil(RUN)
    }

    /// Whether the runs are of 4 pixels or fewer (rows of 7 pixels and narrower are runs of 4
    /// and 3; a 1x1's runs cross rows, so only its maps of 4 pixels or fewer have them).
    fn short_runs(&self) -> bool {
        self.ow.div_ceil(self.runs_per_row()) <= 4
    }

    fn runs(&self) -> usize {
        self.oh * self.runs_per_row()
    }

    /// Run `r` of an image: output row, first column, pixels. A row's runs differ in length by
    /// one at most (a 7-pixel row is runs of 4 and 3, not 6 and 1).
    fn run_at(&self, r: usize) -> (usize, usize, usize) {
        let count = self.runs_per_row();
        let (oy, t) = (r / count, r % count);
        let (ox, end) = (self.ow * t / count, self.ow * (t + 1) / count);
        (oy, ox, end - ox)
    }

    /// Where run `(oy, ox)`'s first pixel reads its first tap, from its image's first plane.
    fn read_at(&self, oy: usize, ox: usize) -> usize {
        oy * self.stride.0 * self.row + ox * self.stride.1
    }

    /// Each tap's offset from a pixel's first tap within a plane.
    fn tap_offsets(&self) -> Vec<usize> {
        let (dy, dx) = self.dilation;
        (0..self.kh)
            .flat_map(|i| (0..self.kw).map(move |j| i * dy * self.row + j * dx))
            .collect()
    }
}

/// Rows (or columns) of the padded input an axis reads, from the first padding row on.
fn read_extent(a: &Axis, out: usize) -> usize {
    (out - 1) * a.stride + a.span()
}

/// `conv` (see [`applies`]) of `x` (NCHW, f32, on the CPU), bias included.
pub fn conv2d(x: &Tensor, conv: &ConvArgs) -> Result<Tensor> {
    let (cout, cg, kh, kw) = conv.weight.dims4()?;
    let weights = conv.prepared.packed(|| {
        with_data(conv.weight, |w| {
            Packed::new(w, cout, cg * kh * kw)
                .ok_or_else(|| candle_core::Error::msg("no vectors to pack the weights for"))
        })
    })?;
    convolve(x, conv, weights, &|passes| vectorized(passes))
}

/// [`conv2d`] with the weights packed, each job's passes run by `run` (with this CPU's widest
/// vectors, or others in tests).
fn convolve(
    x: &Tensor,
    conv: &ConvArgs,
    weights: &Packed,
    run: &(dyn Fn(Passes) + Sync),
) -> Result<Tensor> {
    let (batch, cin, h, w) = x.dims4()?;
    let (cout, cg, kh, kw) = conv.weight.dims4()?;
    let (ah, aw) = (conv.window.h, conv.window.w);
    if cg != cin || (ah.kernel, aw.kernel) != (kh, kw) {
        // Let the general kernel report the shape error.
        return super::conv::conv2d(x, conv);
    }
    let (oh, ow) = conv
        .window
        .output((h, w))
        .map_err(|e| candle_core::Error::msg(format!("conv2d: {e}")))?;
    let (rows, row) = (read_extent(&ah, oh), read_extent(&aw, ow));
    let g = Geometry {
        batch,
        cin,
        oh,
        ow,
        kh,
        kw,
        row,
        plane: rows * row,
        stride: (ah.stride, aw.stride),
        dilation: (ah.dilation, aw.dilation),
    };
    // Padded to whole blocks, so that the last pass adds it a vector at a time.
    let bias = conv
        .bias
        .map(|b| {
            let mut bias = b.to_vec1::<f32>()?;
            bias.resize(weights.blocks() * weights.width, 0.0);
            Ok::<_, candle_core::Error>(bias)
        })
        .transpose()?;
    let mut out = vec![0f32; batch * cout * oh * ow];
    with_data(x, |input| {
        // Every window inside the input: no padding to write.
        let unpadded = ah.before == 0 && aw.before == 0 && rows <= h && row <= w;
        if unpadded && (kh, kw) == (1, 1) {
            // A 1x1 reads one value per output: the input itself at stride 1, the values it
            // reads gathered into dense planes at a larger stride. Either way its output rows
            // follow one another in the read planes as they do in the output, so runs cross
            // them (a 14x14 map is runs of 6 pixels, not of 5, 5 and 4; a 7x7 map of 6 and 5,
            // not 4 and 3).
            let pixels = oh * ow;
            let g = Geometry {
                oh: 1,
                ow: pixels,
                row: pixels,
                plane: pixels,
                stride: (1, 1),
                ..g
            };
            if (ah.stride, aw.stride) == (1, 1) {
                multiply(&g, weights, input, bias.as_deref(), &mut out, run);
            } else {
                // Written whole before it is read.
                let mut read = Scratch::take(batch * cin * pixels);
                read.par_chunks_mut(pixels)
                    .zip(input.par_chunks(h * w))
                    .for_each(|(dst, src)| gather_plane(src, w, (ah.stride, aw.stride), ow, dst));
                multiply(&g, weights, &read, bias.as_deref(), &mut out, run);
            }
        } else if unpadded {
            let g = Geometry {
                row: w,
                plane: h * w,
                ..g
            };
            multiply(&g, weights, input, bias.as_deref(), &mut out, run);
        } else {
            // Written whole (zeros included) before it is read.
            let mut padded = Scratch::take(batch * cin * g.plane);
            padded
                .par_chunks_mut(g.plane)
                .zip(input.par_chunks(h * w))
                .for_each(|(dst, src)| pad_plane(src, (h, w), (ah.before, aw.before), &g, dst));
            multiply(&g, weights, &padded, bias.as_deref(), &mut out, run);
        }
        Ok(())
    })?;
    Tensor::from_vec(out, (batch, cout, oh, ow), x.device())
}

/// The values of `src` (rows of `w`) that a 1x1 of `stride` reads, into `dst` (rows of `ow`).
fn gather_plane(src: &[f32], w: usize, stride: (usize, usize), ow: usize, dst: &mut [f32]) {
    for (oy, dst) in dst.chunks_exact_mut(ow).enumerate() {
        let src = &src[oy * stride.0 * w..];
        for (ox, d) in dst.iter_mut().enumerate() {
            *d = src[ox * stride.1];
        }
    }
}

/// `src` (`h` by `w`) into the read plane `dst`, its first element at `before`, zeros around.
fn pad_plane(
    src: &[f32],
    (h, w): (usize, usize),
    before: (usize, usize),
    g: &Geometry,
    dst: &mut [f32],
) {
    struct Pad<'a> {
        src: &'a [f32],
        h: usize,
        w: usize,
        before: (usize, usize),
        row: usize,
        dst: &'a mut [f32],
    }
    impl WithSimd for Pad<'_> {
        type Output = ();
        #[inline(always)]
        fn with_simd<S: Simd>(self, simd: S) {
            for (y, line) in self.dst.chunks_exact_mut(self.row).enumerate() {
                let iy = y as isize - self.before.0 as isize;
                let src = if iy >= 0 && (iy as usize) < self.h {
                    &self.src[iy as usize * self.w..][..self.w]
                } else {
                    &[]
                };
                copy_padded(simd, src, -(self.before.1 as isize), line);
            }
        }
    }
    vectorized(Pad {
        src,
        h,
        w,
        before,
        row: g.row,
        dst,
    })
}

/// The output, job by job: each job takes some output-channel blocks of some runs of one
/// image. Output-channel blocks are shared out first (each job reads only its blocks'
/// weights), runs too while there are fewer jobs than threads.
fn multiply(
    g: &Geometry,
    w: &Packed,
    input: &[f32],
    bias: Option<&[f32]>,
    out: &mut [f32],
    run: &(dyn Fn(Passes) + Sync),
) {
    let threads = rayon::current_num_threads();
    let groups = w.blocks().min(threads);
    let pieces = threads.div_ceil(g.batch * groups);
    let runs = g.runs();
    let taps = g.tap_offsets();
    let out = SharedOut::new(out);
    (0..g.batch * pieces * groups)
        .into_par_iter()
        .for_each(|j| {
            let (n, piece, group) = (j / (pieces * groups), j / groups % pieces, j % groups);
            let job = Job {
                g,
                w,
                image: &input[n * g.cin * g.plane..][..g.cin * g.plane],
                taps: &taps,
                n,
                runs: runs * piece / pieces..runs * (piece + 1) / pieces,
                blocks: w.blocks() * group / groups..w.blocks() * (group + 1) / groups,
            };
            if job.runs.is_empty() || job.blocks.is_empty() {
                return;
            }
            // Written by each pass but the last before the next one reads it (none where one pass
            // takes every input channel).
            let passes = g.cin.div_ceil(job.channels_per_pass());
            let mut sums = Scratch::take(if passes > 1 {
                job.runs_per_chunk() * RUN * job.sums_row()
            } else {
                0
            });
            run(Passes {
                job: &job,
                sums: &mut sums,
                bias,
                out,
            });
        });
}

/// One job: output-channel blocks `blocks` of runs `runs` of image `n`.
struct Job<'a> {
    g: &'a Geometry,
    w: &'a Packed,
    /// Image `n`'s read planes.
    image: &'a [f32],
    taps: &'a [usize],
    n: usize,
    runs: std::ops::Range<usize>,
    blocks: std::ops::Range<usize>,
}

impl Job<'_> {
    /// Between a pass's partial sums of one pixel and the next's: they are laid out pixel by
    /// pixel (`[pixel][channel]`).
    fn sums_row(&self) -> usize {
        self.blocks.len() * self.w.width
    }

    /// Runs whose passes go together: as many as keep their partial sums within
    /// [`MAX_SUMS_FLOATS`], so that they stay in L2 from one pass to the next (and so do the
    /// few input rows they read).
    fn runs_per_chunk(&self) -> usize {
        (MAX_SUMS_FLOATS / (RUN * self.sums_row())).max(1)
    }

    /// Input channels per pass: as many as [`DEPTH`] taps hold ([`SHORT_RUN_DEPTH`] with short
    /// runs), one at least.
    fn channels_per_pass(&self) -> usize {
        let depth = if self.g.short_runs() {
            SHORT_RUN_DEPTH
        } else {
            DEPTH
        };
        (depth / self.taps.len()).max(1)
    }
}

/// A job's passes over its register blocks, the last one writing the output.
struct Passes<'a> {
    job: &'a Job<'a>,
    sums: &'a mut [f32],
    bias: Option<&'a [f32]>,
    /// The whole output; the job writes its own channels of its own pixels of image `n`.
    out: SharedOut,
}

impl WithSimd for Passes<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: Simd>(self, simd: S) {
        // `width` admits only these two.
        if lanes::<S>() == 16 {
            passes::<S, AVX512_VECTORS>(simd, self)
        } else {
            passes::<S, AVX2_VECTORS>(simd, self)
        }
    }
}

/// The job's register blocks, `V` vectors of channels each, chunk by chunk of its runs (see
/// [`Job::runs_per_chunk`]): passes over [`DEPTH`] taps, each over the chunk's runs and, for
/// each run, over a group of output-channel blocks (so the run's input values are read from L1
/// and the group's weights from L2).
#[inline(always)]
fn passes<S: Simd, const V: usize>(simd: S, p: Passes) {
    // The chunks write their partial sums here in turn.
    let sums = p.sums.as_mut_ptr();
    let (job, g, w) = (p.job, p.job.g, p.job.w);
    let taps = job.taps.len();
    let channels = job.channels_per_pass();
    // With one pass, block by block: each block's outputs are written while their lines are
    // in cache, rather than a few values of every channel per run. With short runs, block by
    // block too: each block's weights stay in L1 through the chunk's runs.
    let group = if channels >= g.cin || g.short_runs() {
        1
    } else {
        (MAX_GROUP_FLOATS / (channels * taps * w.width)).max(1)
    };
    let row = job.sums_row();
    let plane = g.oh * g.ow;
    let per_chunk = job.runs_per_chunk();
    for r0 in job.runs.clone().step_by(per_chunk) {
        let runs = r0..(r0 + per_chunk).min(job.runs.end);
        let (oy, ox, _) = g.run_at(r0);
        let first_pixel = oy * g.ow + ox;
        for b0 in job.blocks.clone().step_by(group) {
            let blocks = b0..(b0 + group).min(job.blocks.end);
            for c0 in (0..g.cin).step_by(channels) {
                let cc = channels.min(g.cin - c0);
                let last = c0 + cc == g.cin;
                for r in runs.clone() {
                    let (oy, ox, len) = g.run_at(r);
                    let input = job.image[c0 * g.plane + g.read_at(oy, ox)..].as_ptr();
                    let pixel = oy * g.ow + ox;
                    for b in blocks.clone() {
                        let first_channel = b * w.width;
                        let sums = if last && c0 == 0 {
                            std::ptr::null_mut()
                        } else {
                            let at = (pixel - first_pixel) * row + (b - job.blocks.start) * w.width;
                            debug_assert!(at + (len - 1) * row + w.width <= p.sums.len());
                            // SAFETY: the chunk's pixels by the job's channels fit the sums.
                            unsafe { sums.add(at) }
                        };
                        let block = Block {
                            weights: w.at(b, c0 * taps),
                            input,
                            channels: cc,
                            plane: g.plane,
                            taps: job.taps,
                            step: g.stride.1,
                            sums,
                            row,
                            first: c0 == 0,
                            // SAFETY: this job's own channels of its own pixels of image `n`.
                            out: last.then(|| Output {
                                at: unsafe {
                                    p.out.at((job.n * w.rows + first_channel) * plane + pixel)
                                },
                                plane,
                                channels: w.width.min(w.rows - first_channel),
                                bias: p.bias.map(|bias| &bias[first_channel..][..w.width]),
                            }),
                        };
                        // SAFETY: see `Block`; the run's `len` pixels read their taps inside the
                        // read planes (their extent is the window's), and the sums hold the run's
                        // `len` pixels by the job's channels.
                        unsafe { block.run::<S, V>(simd, len) };
                    }
                }
            }
        }
    }
}

/// One register block's pass: the sums of `P` pixels by `V` vectors of channels, plus every
/// tap of `channels` input channels from `input`.
struct Block<'a> {
    /// `channels * taps.len()` rows of `V` vectors.
    weights: *const f32,
    /// The run's first pixel's first tap in its first channel.
    input: *const f32,
    channels: usize,
    plane: usize,
    taps: &'a [usize],
    /// Between the run's pixels' input values.
    step: usize,
    /// The run's first pixel's partial sums, the next pixel's `row` further: read unless this
    /// is the first pass, written unless it is the last.
    sums: *mut f32,
    row: usize,
    first: bool,
    /// Where the last pass writes the sums (plus bias).
    out: Option<Output<'a>>,
}

/// Where a block's last pass writes: its first channel's value of the run's first pixel; the
/// next channel's `plane` further, the next pixel's one further.
struct Output<'a> {
    at: *mut f32,
    plane: usize,
    /// The block's channels that exist (the last block's may be fewer than its lanes).
    channels: usize,
    /// The block's bias, one per lane (zeros past `channels`).
    bias: Option<&'a [f32]>,
}

impl Block<'_> {
    /// A run of `len` pixels (at most the CPU's run).
    ///
    /// # Safety
    /// The pointers hold what the fields say, for `len` pixels.
    #[inline(always)]
    unsafe fn run<S: Simd, const V: usize>(&self, simd: S, len: usize) {
        // One instance per run length: the sums of a shorter run (a row's last) are fewer
        // registers, not masked ones.
        match len {
            6 => self.sum::<S, V, 6>(simd),
            5 => self.sum::<S, V, 5>(simd),
            4 => self.sum::<S, V, 4>(simd),
            3 => self.sum::<S, V, 3>(simd),
            2 => self.sum::<S, V, 2>(simd),
            1 => self.sum::<S, V, 1>(simd),
            _ => unreachable!("a run holds one to six pixels, not {len}"),
        }
    }

    /// # Safety
    /// As [`Block::run`], with `P` pixels.
    #[inline(always)]
    unsafe fn sum<S: Simd, const V: usize, const P: usize>(&self, simd: S) {
        let l = lanes::<S>();
        let zero = simd.splat_f32s(0.0);
        let mut acc = [[zero; V]; P];
        if !self.first {
            for (p, a) in acc.iter_mut().enumerate() {
                for (v, a) in a.iter_mut().enumerate() {
                    *a = self
                        .sums
                        .add(p * self.row + v * l)
                        .cast::<S::f32s>()
                        .read_unaligned();
                }
            }
        }
        let mut weights = self.weights;
        for c in 0..self.channels {
            let channel = self.input.add(c * self.plane);
            for &t in self.taps {
                let x = channel.add(t);
                let mut wv = [zero; V];
                for (v, wv) in wv.iter_mut().enumerate() {
                    *wv = weights.add(v * l).cast::<S::f32s>().read_unaligned();
                }
                for (p, a) in acc.iter_mut().enumerate() {
                    let xv = simd.splat_f32s(*x.add(p * self.step));
                    for (a, wv) in a.iter_mut().zip(&wv) {
                        *a = simd.mul_add_f32s(*wv, xv, *a);
                    }
                }
                weights = weights.add(V * l);
            }
        }
        let Some(out) = &self.out else {
            for (p, a) in acc.iter().enumerate() {
                for (v, a) in a.iter().enumerate() {
                    self.sums
                        .add(p * self.row + v * l)
                        .cast::<S::f32s>()
                        .write_unaligned(*a);
                }
            }
            return;
        };
        if let Some(bias) = out.bias {
            for (v, b) in bias.chunks_exact(l).take(V).enumerate() {
                let b = load::<S>(b);
                for a in acc.iter_mut() {
                    a[v] = simd.add_f32s(a[v], b);
                }
            }
        }
        // Channel-major into the NCHW output, through the run's sums laid out pixel-major.
        let mut run = [[0f32; MAX_CHANNELS]; P];
        for (p, a) in acc.iter().enumerate() {
            for (v, a) in a.iter().enumerate() {
                run[p][v * l..]
                    .as_mut_ptr()
                    .cast::<S::f32s>()
                    .write_unaligned(*a);
            }
        }
        for ch in 0..out.channels {
            let dst = out.at.add(ch * out.plane);
            for (p, sums) in run.iter().enumerate() {
                *dst.add(p) = sums[ch];
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ops::geometry::Window;

    /// The AVX2 kernel (two vectors of 8 channels, weights packed in blocks of 16) equals
    /// im2col's multiply, on an AVX-512 machine too: a 3x3 over 7x7 maps in three passes (64
    /// input channels) with 70 output channels (a partial last block), strided, dilated, and a
    /// strided 1x1 gathered into dense planes.
    #[test]
    #[cfg(target_arch = "x86_64")]
    fn the_avx2_kernel_equals_im2col() {
        let Some(v3) = pulp::x86::V3::try_new() else {
            // Without AVX2 the kernel is never taken.
            assert_eq!(width(), None);
            return;
        };
        let dev = candle_core::Device::Cpu;
        // (batch, in, out, h, w, kernel, stride, padding, dilation)
        let cases = [
            (2, 64, 70, 7, 7, 3, 1, 1, 1),
            (1, 20, 16, 15, 13, 3, 2, 1, 1),
            (1, 24, 33, 12, 11, 3, 1, 2, 2),
            (1, 130, 20, 21, 19, 1, 2, 0, 1),
        ];
        for (i, &(n, ci, co, h, w, k, s, p, d)) in cases.iter().enumerate() {
            let weight = Tensor::randn(0f32, 1.0, (co, ci, k, k), &dev).unwrap();
            let bias = Tensor::randn(0f32, 1.0, co, &dev).unwrap();
            let x = Tensor::randn(0f32, 1.0, (n, ci, h, w), &dev).unwrap();
            let window = Window::square(k, s, p, d);
            let prepared = super::super::Prepared::default();
            let conv = ConvArgs {
                weight: &weight,
                bias: Some(&bias),
                window: &window,
                groups: 1,
                prepared: &prepared,
            };
            let w = weight.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            let packed = Packed::with_width(&w, co, ci * k * k, 8 * AVX2_VECTORS);
            let avx2 = |passes: Passes| Simd::vectorize(v3, passes);
            let ours = convolve(&x, &conv, &packed, &avx2).unwrap();
            let reference = super::super::conv::conv2d(&x, &conv).unwrap();
            let diff = (ours - &reference).unwrap().abs().unwrap();
            let max = diff.flatten_all().unwrap().max(0).unwrap();
            let max = max.to_scalar::<f32>().unwrap();
            assert!(
                max < 1e-4,
                "case {i}: AVX2 kernel differs from im2col by {max}"
            );
        }
    }
}
