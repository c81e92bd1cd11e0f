//! The confidence change of an image multiplied by its map (Chattopadhyay et al. 2018): a good
//! map keeps what the class needs, so the class's probability drops little, or rises.
//! pytorch-grad-cam's `DropInConfidence` is `max(0, before - after)`, its `IncreaseInConfidence`
//! is `after > before`; the paper's average drop divides the drop by `before`.

use anyhow::Result;
use candle_core::Tensor;

use super::{class_probabilities, weighted};
use crate::model::Model;

/// The class's probability before and after multiplying the input (normalised, as the model
/// takes it) by `map` (in 0..1 at the input's size).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ConfidenceChange {
    pub before: f32,
    pub after: f32,
}

impl ConfidenceChange {
    pub fn measure(model: &Model, input: &Tensor, map: &[f32], class: usize) -> Result<Self> {
        let before = class_probabilities(model, input, class)?[0];
        let after = class_probabilities(model, &weighted(input, &[map.to_vec()])?, class)?[0];
        Ok(ConfidenceChange { before, after })
    }

    /// pytorch-grad-cam's `DropInConfidence`.
    pub fn drop(self) -> f32 {
        (self.before - self.after).max(0.0)
    }

    /// pytorch-grad-cam's `IncreaseInConfidence` (1 or 0).
    pub fn increase(self) -> f32 {
        f32::from(u8::from(self.after > self.before))
    }

    /// The paper's drop, relative to the probability before.
    pub fn relative_drop(self) -> f32 {
        self.drop() / self.before.max(f32::MIN_POSITIVE)
    }
}
