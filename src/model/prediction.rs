//! Class scores of one image.

use anyhow::Result;
use candle_core::Tensor;
use image::RgbImage;

use super::graph::{Activations, Keep};
use super::head::Head;
use super::Model;
use crate::input::{fit_image, to_tensor, Fit};

/// Class scores (logits) and probabilities of one image, as the model's [`Head`] reads its
/// outputs.
#[derive(Debug, Clone)]
pub struct Prediction {
    /// One score per class (for a one-logit sigmoid head, `[-l, l]`).
    pub logits: Vec<f32>,
    pub probabilities: Vec<f32>,
}

impl Prediction {
    /// The prediction of a network's outputs through `head`.
    pub fn new(outputs: &[f32], head: Head) -> Prediction {
        let logits = head.scores(outputs);
        let probabilities = head.probabilities(&logits);
        Prediction {
            logits,
            probabilities,
        }
    }

    /// The `k` most probable classes with their probabilities, most probable first.
    pub fn top(&self, k: usize) -> Vec<(usize, f32)> {
        let mut v: Vec<(usize, f32)> = self.probabilities.iter().copied().enumerate().collect();
        v.sort_by(|a, b| b.1.total_cmp(&a.1));
        v.truncate(k);
        v
    }
}

impl Model {
    /// The image fitted to the input size and normalised, as a `(1, C, H, W)` tensor (C = 3,
    /// or 1 for a grayscale model).
    pub fn input_tensor(&self, image: &RgbImage, fit: Fit) -> Result<Tensor> {
        let fitted = fit_image(image, &self.normalisation, fit);
        let (channels, _, _) = self.graph.input_size();
        to_tensor(&fitted, &self.normalisation, channels, &self.device)
    }

    /// Runs the network on an image, keeping the requested node outputs.
    pub fn run(&self, image: &RgbImage, fit: Fit, keep: &Keep) -> Result<Activations> {
        let x = self.input_tensor(image, fit)?;
        Ok(self.graph.forward(&x, keep)?)
    }

    /// The prediction read from a forward pass's final output.
    pub fn prediction(&self, acts: &Activations) -> Result<Prediction> {
        let out = acts
            .get(self.graph.output())
            .ok_or_else(|| anyhow::anyhow!("the forward pass kept no output"))?;
        let logits: Vec<f32> = out.get(0)?.flatten_all()?.to_vec1()?;
        if logits.iter().any(|v| !v.is_finite()) {
            anyhow::bail!(
                "the model's output holds NaN or infinite values (an overflow in the network)"
            );
        }
        Ok(match self.head {
            Some(head) => Prediction::new(&logits, head),
            // A backbone has no classes.
            None => Prediction {
                logits: Vec::new(),
                probabilities: Vec::new(),
            },
        })
    }

    pub fn predict(&self, image: &RgbImage, fit: Fit) -> Result<Prediction> {
        self.require_head()?;
        let acts = self.run(image, fit, &Keep::Only(vec![]))?;
        self.prediction(&acts)
    }
}
