//! Chollet's recipe (Deep Learning with Python, 1st edition, 5.4.2): a gray image with small
//! noise (pixels 128..148 of 255), gradient ascent on the objective with the gradient divided by
//! its RMS (+1e-5), step 1 in pixel units, then standardised (std 0.1 around 0.5) and clipped.

use anyhow::Result;
use candle_core::Tensor;
use rand::Rng;

use super::{channel_rng, patterns, Chunk, Pattern};

pub(super) fn run(
    chunk: &Chunk,
    on_step: &mut dyn FnMut() -> Result<()>,
    after_step: &mut dyn FnMut(),
) -> Result<Vec<Pattern>> {
    let s = chunk.settings;
    let (b, n) = (chunk.channels.len(), s.size);
    let dev = &chunk.model.device;
    let mut start = Vec::with_capacity(b * 3 * n * n);
    for &c in chunk.channels {
        let mut rng = channel_rng(s.seed, c);
        start.extend((0..3 * n * n).map(|_| 128.0 + 20.0 * rng.random::<f32>()));
    }
    let mut pixels = Tensor::from_vec(start, (b, 3, n, n), dev)?;
    let (mean, std) = chunk.normalisation()?;
    // Input normalisation and its chain-rule factor from normalised units back to pixels.
    let normalise = |p: &Tensor| -> Result<Tensor> {
        Ok(p.affine(1.0 / 255.0, 0.0)?
            .broadcast_sub(&mean)?
            .broadcast_div(&std)?)
    };
    let pixel_scale = std.affine(255.0, 0.0)?;
    let first = chunk.objective(&normalise(&pixels)?)?;
    for _ in 0..s.steps {
        on_step()?;
        let (_, g) = chunk.objective_and_gradient(&normalise(&pixels)?)?;
        let g = g.broadcast_div(&pixel_scale)?;
        let rms = g
            .sqr()?
            .flatten_from(1)?
            .mean_keepdim(1)?
            .sqrt()?
            .affine(1.0, 1e-5)?;
        let step = g.broadcast_div(&rms.reshape((b, 1, 1, 1))?)?;
        pixels = (pixels + step)?;
        after_step();
    }
    let last = chunk.objective(&normalise(&pixels)?)?;
    // Deprocess: standardise each image, std 0.1 around 0.5, clip.
    let flat = pixels.flatten_from(1)?;
    let m = flat.mean_keepdim(1)?;
    let centred = flat.broadcast_sub(&m)?;
    let sd = centred.sqr()?.mean_keepdim(1)?.sqrt()?.affine(1.0, 1e-5)?;
    let shown = centred
        .broadcast_div(&sd)?
        .affine(0.1, 0.5)?
        .reshape((b, 3, n, n))?;
    patterns(chunk, &shown, &first, &last)
}
