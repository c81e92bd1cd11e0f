//! Lucid/Lucent's recipe (`render_vis` with `fft_image`, `decorrelate=True` and the standard
//! transforms): the image is a Fourier spectrum scaled by 1/frequency, turned to pixels by an
//! inverse real FFT (orthonormal, divided by 4), colour-decorrelated and squashed by a sigmoid.
//! Every step it is padded by 12 (gray), jittered by 8, scaled by 0.9..1.1, rotated by
//! -10..10 degrees and jittered by 4, then optimised with Adam (lr 0.05).
//!
//! The parametrisation and transforms are differentiated by candle's autograd; the network
//! itself by the engine's reverse pass, joined by the surrogate loss `-sum(x * d objective/dx)`.

use anyhow::Result;
use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{AdamW, Optimizer, ParamsAdamW};
use rand::{rngs::StdRng, Rng};
use rand_distr::{Distribution, Normal};

use super::{channel_rng, patterns, Chunk, Pattern};

/// Lucent's `color_correlation_svd_sqrt`, normalised by its largest column norm at use.
const COLOR_CORRELATION_SVD_SQRT: [[f32; 3]; 3] =
    [[0.26, 0.09, 0.02], [0.27, 0.00, -0.05], [0.27, -0.09, 0.03]];
const PAD: usize = 12;
const JITTER_1: usize = 8;
const JITTER_2: usize = 4;

/// The inverse real 2-D FFT of an `n x (n/2+1)` spectrum as matrix products:
/// `image = (Ay R Cx - By R Dx - By I Cx - Ay I Dx) / n`.
struct InverseFourier {
    ay: Tensor,
    by: Tensor,
    cx: Tensor,
    dx: Tensor,
    /// `1 / max(frequency, 1/n)`, shape `(n, n/2+1)`.
    scale: Tensor,
}

impl InverseFourier {
    fn new(n: usize, dev: &Device) -> Result<Self> {
        let kx_n = n / 2 + 1;
        let tau = std::f64::consts::TAU;
        let rows = |f: fn(f64) -> f64| -> Vec<f32> {
            (0..n)
                .flat_map(|y| (0..n).map(move |ky| f(tau * (ky * y) as f64 / n as f64) as f32))
                .collect()
        };
        let weight = |kx: usize| {
            if kx == 0 || (n.is_multiple_of(2) && kx == n / 2) {
                1.0
            } else {
                2.0
            }
        };
        let cols = |f: fn(f64) -> f64| -> Vec<f32> {
            (0..kx_n)
                .flat_map(|kx| {
                    (0..n).map(move |x| (weight(kx) * f(tau * (kx * x) as f64 / n as f64)) as f32)
                })
                .collect()
        };
        let freq = |k: usize| {
            if k <= n / 2 {
                k as f64 / n as f64
            } else {
                (k as f64 - n as f64) / n as f64
            }
        };
        let scale: Vec<f32> = (0..n)
            .flat_map(|ky| {
                (0..kx_n).map(move |kx| (freq(ky).powi(2) + (kx as f64 / n as f64).powi(2)).sqrt())
            })
            .map(|f| (1.0 / f.max(1.0 / n as f64)) as f32)
            .collect();
        Ok(InverseFourier {
            ay: Tensor::from_vec(rows(f64::cos), (n, n), dev)?,
            by: Tensor::from_vec(rows(f64::sin), (n, n), dev)?,
            cx: Tensor::from_vec(cols(f64::cos), (kx_n, n), dev)?,
            dx: Tensor::from_vec(cols(f64::sin), (kx_n, n), dev)?,
            scale: Tensor::from_vec(scale, (n, kx_n), dev)?,
        })
    }

    /// `(B, 3, n, n/2+1)` real and imaginary parameters to `(B, 3, n, n)` pixels (pre-colour).
    fn image(&self, re: &Tensor, im: &Tensor) -> Result<Tensor> {
        let n = self.ay.dim(0)?;
        let r = re.broadcast_mul(&self.scale)?;
        let i = im.broadcast_mul(&self.scale)?;
        let ar = self.ay.broadcast_matmul(&r)?;
        let br = self.by.broadcast_matmul(&r)?;
        let ai = self.ay.broadcast_matmul(&i)?;
        let bi = self.by.broadcast_matmul(&i)?;
        let img = ((ar.broadcast_matmul(&self.cx)? - br.broadcast_matmul(&self.dx)?)?
            - (bi.broadcast_matmul(&self.cx)? + ai.broadcast_matmul(&self.dx)?)?)?;
        Ok(img.affine(1.0 / (n as f64 * 4.0), 0.0)?)
    }
}

/// Lucent's `_linear_decorrelate_color` then a sigmoid: `(B, 3, n, n)` in `0..1`.
fn to_rgb(img: &Tensor, color: &Tensor) -> Result<Tensor> {
    let (b, c, h, w) = img.dims4()?;
    let mixed = color
        .broadcast_matmul(&img.reshape((b, c, h * w))?)?
        .reshape((b, c, h, w))?;
    Ok((mixed.neg()?.exp()? + 1.0)?.recip()?)
}

fn color_matrix(dev: &Device) -> Result<Tensor> {
    let m = COLOR_CORRELATION_SVD_SQRT;
    let max_norm = (0..3)
        .map(|c| (0..3).map(|r| m[r][c].powi(2)).sum::<f32>().sqrt())
        .fold(0.0, f32::max);
    let flat: Vec<f32> = m.iter().flatten().map(|v| v / max_norm).collect();
    Ok(Tensor::from_vec(flat, (3, 3), dev)?)
}

/// One random pad-jitter-scale-rotate-jitter transform as bilinear sampling: for each output
/// pixel, four source indices and weights, plus the weight falling on the gray padding.
fn sampling(rng: &mut StdRng, n: usize) -> (Vec<u32>, Vec<f32>, Vec<f32>) {
    let mid = n + 2 * PAD - JITTER_1;
    let out = mid - JITTER_2;
    let (j1x, j1y) = (rng.random_range(0..JITTER_1), rng.random_range(0..JITTER_1));
    let scale = 1.0 + (rng.random_range(0..11) as f32 - 5.0) / 50.0;
    let angles: Vec<i32> = (-10..=10).chain([0; 5]).collect();
    let theta = (angles[rng.random_range(0..angles.len())] as f32).to_radians();
    let (j2x, j2y) = (rng.random_range(0..JITTER_2), rng.random_range(0..JITTER_2));
    let centre = (mid as f32 - 1.0) / 2.0;
    let (cos, sin) = (theta.cos(), theta.sin());
    let (mut idx, mut wts, mut gray) = (
        Vec::with_capacity(out * out * 4),
        Vec::with_capacity(out * out * 4),
        Vec::with_capacity(out * out),
    );
    for v in 0..out {
        for u in 0..out {
            // Output -> before the last jitter -> before rotation and scale -> padded -> source.
            let (px, py) = ((u + j2x) as f32 - centre, (v + j2y) as f32 - centre);
            let (rx, ry) = (
                (cos * px + sin * py) / scale + centre,
                (-sin * px + cos * py) / scale + centre,
            );
            let (sx, sy) = (rx + j1x as f32 - PAD as f32, ry + j1y as f32 - PAD as f32);
            let (x0, y0) = (sx.floor(), sy.floor());
            let (fx, fy) = (sx - x0, sy - y0);
            let mut outside = 0.0;
            for (dy, wy) in [(0, 1.0 - fy), (1, fy)] {
                for (dx, wx) in [(0, 1.0 - fx), (1, fx)] {
                    let (x, y) = (x0 as i64 + dx, y0 as i64 + dy);
                    let w = wx * wy;
                    if x >= 0 && y >= 0 && (x as usize) < n && (y as usize) < n {
                        idx.push((y as usize * n + x as usize) as u32);
                        wts.push(w);
                    } else {
                        idx.push(0);
                        wts.push(0.0);
                        outside += w;
                    }
                }
            }
            gray.push(outside * 0.5);
        }
    }
    (idx, wts, gray)
}

/// Applies per-image samplings to `(B, 3, n, n)`.
fn transform(img: &Tensor, rngs: &mut [StdRng]) -> Result<Tensor> {
    let (b, c, n, _) = img.dims4()?;
    let dev = img.device();
    let out = n + 2 * PAD - JITTER_1 - JITTER_2;
    let m = out * out;
    let (mut idx, mut wts, mut gray) = (
        Vec::with_capacity(b * m * 4),
        Vec::with_capacity(b * m * 4),
        Vec::with_capacity(b * m),
    );
    for rng in rngs.iter_mut() {
        let (i, w, g) = sampling(rng, n);
        idx.extend(i);
        wts.extend(w);
        gray.extend(g);
    }
    // (B, M, 4) -> (B, 1, M*4), the same for every colour channel.
    let idx = Tensor::from_vec(idx, (b, 1, m * 4), dev)?
        .broadcast_as((b, c, m * 4))?
        .contiguous()?;
    let wts = Tensor::from_vec(wts, (b, 1, m, 4), dev)?;
    let gray = Tensor::from_vec(gray, (b, 1, m), dev)?;
    let picked = img
        .reshape((b, c, n * n))?
        .gather(&idx, 2)?
        .reshape((b, c, m, 4))?;
    let sampled = picked.broadcast_mul(&wts)?.sum(3)?.broadcast_add(&gray)?;
    Ok(sampled.reshape((b, c, out, out))?)
}

pub(super) fn run(
    chunk: &Chunk,
    on_step: &mut dyn FnMut() -> Result<()>,
    after_step: &mut dyn FnMut(),
) -> Result<Vec<Pattern>> {
    let s = chunk.settings;
    let (b, n) = (chunk.channels.len(), s.size);
    let dev = &chunk.model.device;
    let kx = n / 2 + 1;
    let mut rngs: Vec<StdRng> = chunk
        .channels
        .iter()
        .map(|&c| channel_rng(s.seed, c))
        .collect();
    let normal = Normal::new(0.0f32, 0.01).expect("positive");
    let (mut re, mut im) = (
        Vec::with_capacity(b * 3 * n * kx),
        Vec::with_capacity(b * 3 * n * kx),
    );
    for rng in rngs.iter_mut() {
        re.extend((0..3 * n * kx).map(|_| normal.sample(rng)));
        im.extend((0..3 * n * kx).map(|_| normal.sample(rng)));
    }
    let re = Var::from_tensor(&Tensor::from_vec(re, (b, 3, n, kx), dev)?)?;
    let im = Var::from_tensor(&Tensor::from_vec(im, (b, 3, n, kx), dev)?)?;
    let fourier = InverseFourier::new(n, dev)?;
    let color = color_matrix(dev)?;
    let (mean, std) = chunk.normalisation()?;
    let normalise =
        |x: &Tensor| -> Result<Tensor> { Ok(x.broadcast_sub(&mean)?.broadcast_div(&std)?) };
    let params = ParamsAdamW {
        lr: 0.05,
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
        weight_decay: 0.0,
    };
    let mut adam = AdamW::new(vec![re.clone(), im.clone()], params)?;
    let first = chunk.objective(&normalise(&to_rgb(
        &fourier.image(re.as_tensor(), im.as_tensor())?,
        &color,
    )?)?)?;
    for _ in 0..s.steps {
        on_step()?;
        let rgb = to_rgb(&fourier.image(re.as_tensor(), im.as_tensor())?, &color)?;
        let x = normalise(&transform(&rgb, &mut rngs)?)?;
        let (_, g) = chunk.objective_and_gradient(&x.detach())?;
        let surrogate = (&x * g.detach())?.sum_all()?.neg()?;
        adam.backward_step(&surrogate)?;
        after_step();
    }
    let rgb = to_rgb(&fourier.image(re.as_tensor(), im.as_tensor())?, &color)?.detach();
    let last = chunk.objective(&normalise(&rgb)?)?;
    patterns(chunk, &rgb.to_dtype(DType::F32)?, &first, &last)
}
