//! Filter patterns: the input that a channel responds to most, by gradient ascent in input space
//! from a blank image. All requested channels of a layer are optimised together, one image per
//! channel, in chunks that fit a memory budget, each chunk's passes a few images at a time on
//! the CPU; the forward pass stops at the target layer (at its input, where the layer is a
//! convolution: see [`Target`]) and gradients are taken w.r.t. the input only.

mod classic;
mod lucid;
mod objective;
mod target;

use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{bail, Result};
use candle_core::Tensor;
use image::RgbImage;

pub use objective::Objective;
pub use target::{images_per_pass, Target};

use crate::model::card::ChannelOrder;
use crate::model::{Model, NodeId};
use crate::viz::render::grid;

/// How the image is parametrised and optimised.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Recipe {
    /// Chollet's: pixels from a gray, slightly noisy start, RMS-normalised gradient steps.
    #[default]
    Classic,
    /// Lucid/Lucent's: Fourier-space, colour-decorrelated image, random jitter, scale and
    /// rotation every step, Adam.
    Lucid,
}

/// Everything that decides the result: same settings, same pictures.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FilterSettings {
    pub recipe: Recipe,
    pub objective: Objective,
    /// Side of the optimised square image.
    pub size: usize,
    pub steps: usize,
    pub seed: u64,
    /// Memory one chunk of the batch may use.
    pub budget_bytes: usize,
}

/// Default memory budget for a chunk of filter images.
pub const DEFAULT_BUDGET_BYTES: usize = 2 << 30;

impl FilterSettings {
    /// The recipe's reference settings: classic 150 px and 40 steps (Chollet), lucid 128 px and
    /// 512 steps (Lucent's `render_vis`).
    pub fn new(recipe: Recipe) -> Self {
        let (size, steps) = match recipe {
            Recipe::Classic => (150, 40),
            Recipe::Lucid => (128, 512),
        };
        FilterSettings {
            recipe,
            objective: Objective::Channel,
            size,
            steps,
            seed: 0,
            budget_bytes: DEFAULT_BUDGET_BYTES,
        }
    }
}

/// One optimised image.
#[derive(Debug, Clone)]
pub struct Pattern {
    pub channel: usize,
    pub image: RgbImage,
    /// The objective on the starting image and on the final one.
    pub start: f32,
    pub end: f32,
}

/// Returned (as the error) when the cancel flag stops a run.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("cancelled")]
pub struct Cancelled;

/// What a recipe needs from the driver for one chunk.
struct Chunk<'a> {
    model: &'a Model,
    channels: &'a [usize],
    settings: &'a FilterSettings,
    target: Target<'a>,
}

impl Chunk<'_> {
    /// Objective values and `d objective / d input` for a batch of normalised RGB inputs.
    fn objective_and_gradient(&self, x: &Tensor) -> Result<(Vec<f32>, Tensor)> {
        let (values, grad) = self.target.objective_and_gradient(&self.to_model(x)?)?;
        Ok((values, self.to_model(&grad)?))
    }

    /// Objective values only.
    fn objective(&self, x: &Tensor) -> Result<Vec<f32>> {
        self.target.objective(&self.to_model(x)?)
    }

    /// `(1, 3, 1, 1)` tensors of the model's mean and std, per image channel (RGB): recipes
    /// normalise RGB images, and [`Chunk::to_model`] puts the channels in the model's order.
    fn normalisation(&self) -> Result<(Tensor, Tensor)> {
        let (mean, std) = self.model.normalisation.rgb_statistics();
        let dev = &self.model.device;
        Ok((
            Tensor::from_vec(mean.to_vec(), (1, 3, 1, 1), dev)?,
            Tensor::from_vec(std.to_vec(), (1, 3, 1, 1), dev)?,
        ))
    }

    /// A normalised RGB batch in the model's channel order (its own inverse: a BGR model's
    /// gradient comes back to RGB the same way).
    fn to_model(&self, x: &Tensor) -> Result<Tensor> {
        match self.model.normalisation.order {
            ChannelOrder::Rgb => Ok(x.clone()),
            ChannelOrder::Bgr => {
                let reversed = Tensor::new(&[2u32, 1, 0], x.device())?;
                Ok(x.index_select(&reversed, 1)?)
            }
        }
    }
}

/// Bytes one image of a pass may need, at most: every node output up to the layer at the
/// optimised size, three times over. The pass keeps only what its reverse pass reads
/// ([`crate::model::Graph::kept_for_gradient`], about half of them in VGG); the rest is room
/// for gradients, temporaries and the kernels' scratch.
fn bytes_per_image(model: &Model, layer: NodeId, size: usize) -> usize {
    let floats: f64 = floats_per_image(model, layer, size).sum();
    (floats as usize).max(1) * 4 * 3
}

/// Passes one chunk takes per step, at most: the cancel flag and the progress are seen between
/// steps (VGG16 `features.17` at 150 px on two cores: 16 images, about 0.4 s a step).
const PASSES_PER_CHUNK: usize = 8;

/// Bytes a chunk holds for each of its images between passes, at most: the image, its
/// gradient and a recipe's state (Lucid's spectrum and Adam's two moments), a few copies each.
fn state_bytes(size: usize) -> usize {
    16 * 3 * size * size * 4
}

/// Floats in each node's output up to `layer`, for one image of `size` pixels square.
fn floats_per_image(model: &Model, layer: NodeId, size: usize) -> impl Iterator<Item = f64> + '_ {
    let (_, h, w) = model.graph.input_size();
    let scale = (size * size) as f64 / (h * w) as f64;
    model.graph.nodes()[..=layer]
        .iter()
        .map(move |n| n.shape[1..].iter().product::<usize>() as f64 * scale)
}

/// Optimises one image per channel. `progress(done, total)` is called after every step of every
/// chunk (monotone, ending at `total`); `cancel` is checked before every step.
pub fn optimise(
    model: &Model,
    layer: NodeId,
    channels: &[usize],
    settings: &FilterSettings,
    progress: &mut dyn FnMut(usize, usize),
    cancel: &AtomicBool,
) -> Result<Vec<Pattern>> {
    if channels.is_empty() {
        bail!("no channels to optimise");
    }
    let (inputs, _, _) = model.graph.input_size();
    if inputs != 3 {
        bail!(
            "filter patterns are optimised as RGB images; {} takes {inputs} input channel{}",
            model.name,
            if inputs == 1 { "" } else { "s" }
        );
    }
    if settings.size < 16 || settings.size > 1024 {
        bail!("the image size must be between 16 and 1024 pixels");
    }
    let node = model.graph.node(layer);
    if let Some(&c) = channels.iter().find(|&&c| c >= node.shape[1]) {
        bail!(
            "channel {c} is out of range: {} has {} channels",
            node.name,
            node.shape[1]
        );
    }
    // A budget beyond half the memory available would only end in the allocator.
    let budget = match crate::model::memory::available() {
        Some(free) => settings.budget_bytes.min((free / 2) as usize),
        None => settings.budget_bytes,
    };
    // A pass holds what the budget allows, and on the CPU no more than fits the cache; a
    // chunk, the images its passes take in turn (at most PASSES_PER_CHUNK passes), within what
    // the budget leaves. As few chunks as that allows, of even sizes: 13+13+13+13+12 rather
    // than 15+15+15+15+4, the same steps with every batch large enough for the batched kernels.
    let pass_image = bytes_per_image(model, layer, settings.size);
    let fit = (budget / pass_image).clamp(1, channels.len());
    let per_pass = images_per_pass(model, layer, settings.size, &model.device).min(fit);
    let held = budget.saturating_sub(per_pass * pass_image) / state_bytes(settings.size);
    let most = held
        .min(per_pass.saturating_mul(PASSES_PER_CHUNK))
        .clamp(per_pass, channels.len());
    let per_chunk = channels.len().div_ceil(channels.len().div_ceil(most));
    let chunks: Vec<&[usize]> = channels.chunks(per_chunk).collect();
    let total = settings.steps * chunks.len();
    let mut done = 0;
    let mut patterns = Vec::with_capacity(channels.len());
    for channels in chunks {
        let chunk = Chunk {
            model,
            channels,
            settings,
            target: Target::new(model, layer, channels, settings.objective, per_pass)?,
        };
        let mut on_step = || -> Result<()> {
            if cancel.load(Ordering::Relaxed) {
                return Err(Cancelled.into());
            }
            Ok(())
        };
        let mut after_step = || {
            done += 1;
            progress(done, total);
        };
        patterns.extend(match settings.recipe {
            Recipe::Classic => classic::run(&chunk, &mut on_step, &mut after_step)?,
            Recipe::Lucid => lucid::run(&chunk, &mut on_step, &mut after_step)?,
        });
    }
    Ok(patterns)
}

/// A grid of patterns, 8 to a row, with margins.
pub fn pattern_grid(patterns: &[Pattern]) -> RgbImage {
    let cells: Vec<RgbImage> = patterns.iter().map(|p| p.image.clone()).collect();
    let inner = grid(&cells, 8, 4);
    let margin = 4;
    let mut out = RgbImage::from_pixel(
        inner.width() + 2 * margin,
        inner.height() + 2 * margin,
        crate::viz::render::GAP_COLOUR,
    );
    image::imageops::replace(&mut out, &inner, margin as i64, margin as i64);
    out
}

/// Per-image seeded random numbers, so a channel gets the same start alone or in a batch.
fn channel_rng(seed: u64, channel: usize) -> rand::rngs::StdRng {
    use rand::SeedableRng;
    rand::rngs::StdRng::seed_from_u64(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ channel as u64)
}

/// The chunk's patterns from its shown images (`(B, 3, H, W)` in `0..=1`) and objectives.
fn patterns(chunk: &Chunk, shown: &Tensor, first: &[f32], last: &[f32]) -> Result<Vec<Pattern>> {
    if first.iter().chain(last).any(|v| !v.is_finite()) {
        anyhow::bail!(
            "the layer's output holds NaN or infinite values (an overflow in the network); \
             there is no pattern to show"
        );
    }
    Ok(to_images(shown)?
        .into_iter()
        .zip(chunk.channels)
        .enumerate()
        .map(|(i, (image, &channel))| Pattern {
            channel,
            image,
            start: first[i],
            end: last[i],
        })
        .collect())
}

/// `(B, 3, H, W)` values in `0..=1` to images.
fn to_images(x: &Tensor) -> Result<Vec<RgbImage>> {
    let (b, _, h, w) = x.dims4()?;
    let data: Vec<f32> = x.flatten_all()?.to_vec1()?;
    Ok((0..b)
        .map(|i| {
            let base = i * 3 * h * w;
            RgbImage::from_fn(w as u32, h as u32, |px, py| {
                let at = |c: usize| data[base + c * h * w + py as usize * w + px as usize];
                image::Rgb([0, 1, 2].map(|c| (at(c).clamp(0.0, 1.0) * 255.0).round() as u8))
            })
        })
        .collect())
}
