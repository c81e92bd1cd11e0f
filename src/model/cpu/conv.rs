//! The CPU convolution kernel: the output is cut into tiles of pixels, each tile's input patches
//! are laid out as columns (im2col) and multiplied by the weight matrix in one `gemm` call, bias
//! included. Tiles run in parallel on rayon's pool, the one candle's own CPU ops use. A strided
//! convolution's input is first split into padded phase planes (see [`Phases`]), where each
//! tap's patches along an output row are one contiguous run.

use candle_core::{bail, Result, Tensor};
use gemm::Parallelism;
use pulp::{Simd, WithSimd};
use rayon::prelude::*;

use super::phases::Phases;
use super::vector_runs::{copy, copy_padded, fill_zero};
use super::ConvArgs;
use super::{pieces_per_block, run_jobs, vectorized, with_data, SharedOut, MULTIPLY_ROWS};

/// Upper bound on one tile's column buffer, in floats (256 KiB): a tile's columns are written
/// and then read by `gemm` while still in the core's L2 cache (measured: 1.2-1.4x faster on
/// 64- and 128-channel 3x3 layers than 16 MiB tiles; no loss on wider ones).
const MAX_COLUMN_FLOATS: usize = 1 << 16;
/// Narrowest tile worth a `gemm` call of its own.
const MIN_TILE: usize = 64;

/// Sizes of one convolution, all derived from the input and weight shapes.
#[derive(Debug, Clone, Copy)]
struct Shape {
    batch: usize,
    channels: usize,
    height: usize,
    width: usize,
    out_channels: usize,
    kh: usize,
    kw: usize,
    out_h: usize,
    out_w: usize,
    groups: usize,
    /// Per axis: stride, dilation, and the padding before the first element (the padding after
    /// the last only shows in the output size).
    stride: (usize, usize),
    dilation: (usize, usize),
    pad: (usize, usize),
}

impl Shape {
    fn new(x: &Tensor, conv: &ConvArgs) -> Result<Self> {
        let (batch, channels, height, width) = x.dims4()?;
        let (out_channels, group_channels, kh, kw) = conv.weight.dims4()?;
        let groups = conv.groups;
        let (wh, ww) = (conv.window.h, conv.window.w);
        if kh == 0
            || kw == 0
            || groups == 0
            || group_channels * groups != channels
            || out_channels % groups != 0
            || (wh.kernel, ww.kernel) != (kh, kw)
        {
            bail!(
                "conv2d: {channels} input channels do not fit weight {:?} in {groups} groups",
                conv.weight.dims()
            );
        }
        let (out_h, out_w) = conv
            .window
            .output((height, width))
            .map_err(|e| candle_core::Error::msg(format!("conv2d: {e}")))?;
        Ok(Self {
            batch,
            channels,
            height,
            width,
            out_channels,
            kh,
            kw,
            out_h,
            out_w,
            groups,
            stride: (wh.stride, ww.stride),
            dilation: (wh.dilation, ww.dilation),
            pad: (wh.before, ww.before),
        })
    }

    fn group_in(&self) -> usize {
        self.channels / self.groups
    }

    fn group_out(&self) -> usize {
        self.out_channels / self.groups
    }

    /// Rows of the column matrix: one per (input channel, kernel row, kernel column).
    fn patch_len(&self) -> usize {
        self.group_in() * self.kh * self.kw
    }

    fn pixels(&self) -> usize {
        self.out_h * self.out_w
    }

    /// A 1x1 convolution that reads the input as it lies: its column matrix is the input.
    fn is_pointwise(&self) -> bool {
        self.kh == 1
            && self.kw == 1
            && self.stride == (1, 1)
            && self.pad == (0, 0)
            && (self.out_h, self.out_w) == (self.height, self.width)
    }

    /// Tile width in output pixels: tiles of equal width, at least two per thread, each with a
    /// column buffer within [`MAX_COLUMN_FLOATS`], and a whole number of tiles per thread
    /// while there are few. Widened to a multiple of [`MULTIPLY_ROWS`] where that leaves a
    /// whole number of tiles per thread (one image at 224 px: VGG16 `features.2` 0.87x the
    /// time, ResNet50's stem 0.90x; ResNet50's 56x56 3x3 lost 1.11x where widening left 25
    /// tiles for two threads, hence the condition).
    fn tile(&self, threads: usize) -> usize {
        let pixels = self.pixels();
        let blocks = self.batch * self.groups;
        let by_memory = (pixels * self.patch_len()).div_ceil(MAX_COLUMN_FLOATS);
        let per_block = pieces_per_block(blocks, by_memory, threads);
        let tile = pixels.div_ceil(per_block).max(MIN_TILE).min(pixels);
        let widened = tile.next_multiple_of(MULTIPLY_ROWS).min(pixels);
        let count = blocks * pixels.div_ceil(widened);
        if count.is_multiple_of(threads) {
            widened
        } else {
            tile
        }
    }
}

/// Where a tile's patches are read from.
#[derive(Clone, Copy)]
enum Source<'a> {
    /// The input as it lies (NCHW).
    Planes(&'a [f32]),
    /// Each input plane's phase planes, [`Phases::len`] floats per plane, in NCHW order.
    Phased(&'a Phases, &'a [f32]),
}

impl Source<'_> {
    /// Whether the source already is the column matrix (a 1x1 convolution, no padding): `gemm`
    /// reads it in place, with no im2col.
    fn is_column_matrix(&self, s: &Shape) -> bool {
        match self {
            Source::Planes(_) => s.is_pointwise(),
            Source::Phased(layout, _) => s.kh * s.kw == 1 && layout.dense(),
        }
    }
}

/// `conv` applied to `x` (NCHW, f32, on the CPU), bias included.
pub fn conv2d(x: &Tensor, conv: &ConvArgs) -> Result<Tensor> {
    let s = Shape::new(x, conv)?;
    let mut out = vec![0f32; s.batch * s.out_channels * s.pixels()];
    with_data(x, |input| {
        let (layout, phased);
        let source = if s.stride != (1, 1) {
            layout = Phases::new((s.height, s.width), conv.window, (s.out_h, s.out_w));
            phased = split_planes(&layout, input, s.height * s.width);
            Source::Phased(&layout, &phased)
        } else {
            Source::Planes(input)
        };
        let bias = conv.bias.map(|b| b.to_vec1::<f32>()).transpose()?;
        with_data(conv.weight, |weight| {
            run(&s, source, weight, bias.as_deref(), &mut out);
            Ok(())
        })
    })?;
    Tensor::from_vec(out, (s.batch, s.out_channels, s.out_h, s.out_w), x.device())
}

/// Every `plane`-long input plane split into its zero-padded phase planes, in parallel.
fn split_planes(layout: &Phases, input: &[f32], plane: usize) -> Vec<f32> {
    let mut phased = vec![0f32; input.len() / plane * layout.len()];
    phased
        .par_chunks_exact_mut(layout.len())
        .zip(input.par_chunks_exact(plane))
        .for_each(|(dst, src)| layout.split_into(src, dst));
    phased
}

/// One output tile: image `n`, group `g`, the group's output channels `first..first + rows`,
/// pixels `start..start + len` of the flattened output.
#[derive(Debug, Clone, Copy)]
struct Tile {
    n: usize,
    g: usize,
    first: usize,
    rows: usize,
    start: usize,
    len: usize,
}

fn run(s: &Shape, source: Source, weight: &[f32], bias: Option<&[f32]>, out: &mut [f32]) {
    let threads = rayon::current_num_threads();
    let in_place = source.is_column_matrix(s);
    let blocks = s.batch * s.groups;
    // An input read in place has no columns to keep in cache: with fewer images (groups) than
    // threads, each is cut along its output channels into whole rows of pixels (1x1s of one
    // image on 2 threads, 21 shapes of ResNet50, DenseNet, EfficientNet-B0 and MobileNetV3:
    // 0.74-1.0x the time of tiles of pixels, 1.04x on 64 to 256 channels of 56x56).
    let og = s.group_out();
    let (tile, cuts) = if in_place && blocks < threads {
        (s.pixels(), threads.div_ceil(blocks).min(og).max(1))
    } else {
        (s.tile(threads), 1)
    };
    let per_block = s.pixels().div_ceil(tile) * cuts;
    let tiles: Vec<Tile> = (0..blocks * per_block)
        .map(|i| {
            let (block, t) = (i / per_block, i % per_block);
            let (t, cut) = (t / cuts, t % cuts);
            let start = t * tile;
            let first = og * cut / cuts;
            Tile {
                n: block / s.groups,
                g: block % s.groups,
                first,
                rows: og * (cut + 1) / cuts - first,
                start,
                len: tile.min(s.pixels() - start),
            }
        })
        .collect();
    let columns = if in_place { 0 } else { s.patch_len() * tile };
    let ptr = SharedOut::new(out);
    run_jobs(
        tiles.len(),
        || vec![0f32; columns],
        |buf, i, parallelism| {
            // SAFETY: tiles are disjoint rectangles of the output.
            unsafe { run_tile(s, source, weight, bias, ptr, buf, tiles[i], parallelism) }
        },
    );
}

/// Computes one tile of the output.
///
/// # Safety
/// `out` points to the whole output buffer, and no other call writes this tile's elements.
#[allow(clippy::too_many_arguments)]
unsafe fn run_tile(
    s: &Shape,
    source: Source,
    weight: &[f32],
    bias: Option<&[f32]>,
    out: SharedOut,
    buf: &mut [f32],
    t: Tile,
    parallelism: Parallelism,
) {
    let (cg, og, pixels, k) = (s.group_in(), s.group_out(), s.pixels(), s.patch_len());
    let first_plane = t.n * s.channels + t.g * cg;
    let in_place = source.is_column_matrix(s);
    let (rhs, rhs_rs) = match source {
        Source::Planes(input) => {
            let plane = s.height * s.width;
            let image = &input[first_plane * plane..][..cg * plane];
            if in_place {
                (image[t.start..].as_ptr(), plane as isize)
            } else {
                im2col(s, Source::Planes(image), t, &mut buf[..k * t.len]);
                (buf.as_ptr(), t.len as isize)
            }
        }
        Source::Phased(layout, phased) => {
            let image = &phased[first_plane * layout.len()..][..cg * layout.len()];
            if in_place {
                // The read phase plane of each channel is a row of the column matrix.
                let first = layout.reads()[0] + t.start;
                (image[first..].as_ptr(), layout.len() as isize)
            } else {
                im2col(s, Source::Phased(layout, image), t, &mut buf[..k * t.len]);
                (buf.as_ptr(), t.len as isize)
            }
        }
    };
    let first_row = t.g * og + t.first;
    let dst = out.at((t.n * s.out_channels + first_row) * pixels + t.start);
    if let Some(bias) = bias {
        for (o, b) in bias[first_row..][..t.rows].iter().enumerate() {
            std::slice::from_raw_parts_mut(dst.add(o * pixels), t.len).fill(*b);
        }
    }
    gemm::gemm(
        t.rows,
        t.len,
        k,
        dst,
        1,
        pixels as isize,
        bias.is_some(),
        weight[first_row * k..].as_ptr(),
        1,
        k as isize,
        rhs,
        1,
        rhs_rs,
        1.0,
        1.0,
        false,
        false,
        false,
        parallelism,
    );
}

/// The tile's pixels as runs along output rows, the same for every row of the column matrix:
/// (output row, first output column, length, offset in the tile).
fn row_runs(s: &Shape, t: Tile) -> Vec<(usize, usize, usize, usize)> {
    let ow = s.out_w;
    let mut runs = Vec::new();
    let (mut p, mut filled) = (t.start, 0);
    while filled < t.len {
        let (oy, ox0) = (p / ow, p % ow);
        let run = (ow - ox0).min(t.len - filled);
        runs.push((oy, ox0, run, filled));
        filled += run;
        p += run;
    }
    runs
}

/// Writes the input patches of tile `t` from `image` (a group's channels, as they lie or as
/// phase planes) as a `(channels * kh * kw, t.len)` row-major matrix: row `(c, i, j)` holds,
/// for each output pixel of the tile, the input value under kernel tap `(i, j)` of channel `c`
/// (zero where the tap falls in the padding). Planes as they lie come from stride-1
/// convolutions; in phase planes every tap's patches along an output row are one contiguous
/// run, padding included.
fn im2col(s: &Shape, image: Source, t: Tile, cols: &mut [f32]) {
    debug_assert!(matches!(image, Source::Phased(..)) || s.stride == (1, 1));
    vectorized(Im2col {
        s,
        image,
        runs: &row_runs(s, t),
        len: t.len,
        cols,
    })
}

struct Im2col<'a> {
    s: &'a Shape,
    image: Source<'a>,
    runs: &'a [(usize, usize, usize, usize)],
    len: usize,
    cols: &'a mut [f32],
}

impl WithSimd for Im2col<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: Simd>(self, simd: S) {
        let s = self.s;
        let mut rows = self.cols.chunks_exact_mut(self.len);
        match self.image {
            Source::Planes(image) => {
                let (dil_h, dil) = (s.dilation.0 as isize, s.dilation.1 as isize);
                let (pad_top, pad) = (s.pad.0 as isize, s.pad.1 as isize);
                for plane in image.chunks_exact(s.height * s.width) {
                    for i in 0..s.kh as isize {
                        for j in 0..s.kw as isize {
                            let row = rows.next().expect("one row per tap");
                            for &(oy, ox0, run, filled) in self.runs {
                                let dst = &mut row[filled..filled + run];
                                let iy = oy as isize - pad_top + i * dil_h;
                                if iy < 0 || iy >= s.height as isize {
                                    fill_zero(simd, dst);
                                } else {
                                    let line = &plane[iy as usize * s.width..][..s.width];
                                    copy_padded(simd, line, ox0 as isize + j * dil - pad, dst);
                                }
                            }
                        }
                    }
                }
            }
            Source::Phased(layout, phased) => {
                for planes in phased.chunks_exact(layout.len()) {
                    for &read in layout.reads() {
                        let row = rows.next().expect("one row per tap");
                        for &(oy, ox0, run, filled) in self.runs {
                            let from = read + layout.position(oy, ox0);
                            let dst = &mut row[filled..filled + run];
                            copy(simd, &planes[from..from + run], dst);
                        }
                    }
                }
            }
        }
    }
}
