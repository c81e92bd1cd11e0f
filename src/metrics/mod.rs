//! How good a class activation map is, measured by what the model does when the image is
//! changed where the map points: the confidence change of the image multiplied by the map
//! (Chattopadhyay et al. 2018, as pytorch-grad-cam's `metrics/cam_mult_image.py`), deletion and
//! insertion curves (Petsiuk et al. 2018), ROAD (Rong et al. 2022, as pytorch-grad-cam's
//! `metrics/road.py`), and on generated shapes the pointing game against the
//! objects' boxes (Zhang et al. 2016). Scores are class probabilities (pytorch-grad-cam's
//! `ClassifierOutputSoftmaxTarget`).

pub mod confidence;
pub mod deletion;
pub mod pointing;
pub mod road;

use anyhow::{Context, Result};
use candle_core::Tensor;

use crate::model::{Keep, Model};

/// The probability of `class` for every image of the batch `inputs` (N, C, H, W).
pub fn class_probabilities(model: &Model, inputs: &Tensor, class: usize) -> Result<Vec<f32>> {
    let head = model.require_head()?;
    let graph = &model.graph;
    let acts = graph.forward(inputs, &Keep::Only(vec![]))?;
    let out = acts
        .get(graph.output())
        .context("the forward pass kept no output")?;
    let rows: Vec<Vec<f32>> = out.flatten_from(1)?.to_vec2()?;
    Ok(rows
        .iter()
        .map(|logits| head.probabilities(&head.scores(logits))[class])
        .collect())
}

/// `input` (1, C, H, W) multiplied at every pixel by `weight` (H x W, row-major), per image of
/// a batch of such weights: (N, C, H, W).
pub fn weighted(input: &Tensor, weights: &[Vec<f32>]) -> Result<Tensor> {
    let (_, c, h, w) = input.dims4()?;
    let masks: Vec<f32> = weights.iter().flatten().copied().collect();
    let masks = Tensor::from_vec(masks, (weights.len(), 1, h, w), input.device())?;
    Ok(input
        .broadcast_mul(&masks)?
        .reshape((weights.len(), c, h, w))?)
}
