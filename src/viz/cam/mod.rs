//! Class activation maps: one driver for the whole family. The forward pass is done once per
//! image and kept; a class switch costs one backward pass from the logits to the target layer
//! (cached per class), and a method switch costs only the weighting.

mod methods;
mod smooth;

use std::collections::HashMap;

use anyhow::{bail, Context, Result};
use candle_core::{Tensor, D};

pub use methods::CamMethod;
pub use smooth::smoothed;

use crate::model::ops::{AdaptiveAvgPool, Linear, Op};
use crate::model::{Activations, Head, Keep, Model, NodeId};
use crate::viz::resize::{min_max, resize_bilinear};

/// A computed map, normalised as pytorch-grad-cam does.
#[derive(Debug, Clone)]
pub struct CamMap {
    pub method: CamMethod,
    pub class: usize,
    /// The class's logit.
    pub score: f32,
    /// ReLU, then min-max normalised, at the layer's resolution.
    pub layer_map: Vec<f32>,
    /// `(h, w)` of the layer.
    pub layer_size: (usize, usize),
    /// Upsampled (bilinear) to the input size and normalised again.
    pub map: Vec<f32>,
    /// `(H, W)` of the network input.
    pub size: (usize, usize),
    /// Nothing survived the ReLU: no place at this layer speaks for the class, and the map is
    /// all zeros, which must not be shown as if it meant something.
    pub empty: bool,
    /// The map is one value everywhere (a layer of 1x1, after global pooling): it cannot say
    /// where, and min-max normalisation would show it as zeros.
    pub uniform: bool,
}

impl CamMap {
    /// A one-line explanation when the map says nothing about where: empty or uniform.
    pub fn empty_reason(&self, label: &str, layer: &str) -> Option<String> {
        let title = self.method.title();
        let (h, w) = self.layer_size;
        if self.empty {
            Some(format!(
                "{title} for '{label}' at {layer} is zero everywhere: nothing at this layer speaks for that class"
            ))
        } else if self.uniform {
            Some(format!(
                "{title} for '{label}' at {layer} is the same everywhere ({h}x{w}): this layer cannot say where; pick one with a larger map"
            ))
        } else {
            None
        }
    }
}

/// Memory the masked forward passes of Score-CAM may use at once.
pub const SCORE_CAM_BUDGET_BYTES: usize = 1 << 30;

/// The layer a CAM is taken at by default: the one the model's family recommends, else the last
/// node before flattening with a spatial output larger than 1x1 (adaptive pooling excluded).
pub fn default_layer(model: &Model) -> Option<NodeId> {
    let g = &model.graph;
    if let Some(id) = model.cam_layer.as_deref().and_then(|l| g.find(l).ok()) {
        return Some(id);
    }
    let flatten = g
        .nodes()
        .iter()
        .position(|n| matches!(n.op, Op::Flatten(_)))
        .unwrap_or(g.nodes().len());
    (1..flatten).rev().find(|&id| {
        let n = g.node(id);
        n.shape.len() == 4 && n.shape[2] * n.shape[3] > 1 && !matches!(n.op, Op::AdaptiveAvgPool(_))
    })
}

/// How many of the top classes' gradients one reverse pass computes where the head is cheap
/// per class (see [`CamSession::gradient`]).
pub const GRADIENTS_AT_ONCE: usize = 5;

/// The `k` highest-scoring classes, best first.
pub fn top_classes(scores: &[f32], k: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    order.truncate(k);
    order
}

/// A gradient method: the raw map from a layer's activations and the class's gradients, one
/// `h*w` plane per channel each.
type Weighing = fn(&[Vec<f32>], &[Vec<f32>]) -> Vec<f32>;

/// Everything a CAM needs for one image and one layer.
pub struct CamSession<'m> {
    model: &'m Model,
    layer: NodeId,
    input: Tensor,
    acts: Activations,
    /// The layer's output, `C` channels of `h*w`.
    activation: Vec<Vec<f32>>,
    layer_size: (usize, usize),
    /// Class scores (see [`Head::scores`]).
    logits: Vec<f32>,
    head: Head,
    gradients: HashMap<usize, Vec<Vec<f32>>>,
    /// Score-CAM: the logits of every masked input, one row per channel.
    masked_logits: Option<Vec<Vec<f32>>>,
}

impl<'m> CamSession<'m> {
    /// Runs the forward pass for `input` (`(1, 3, H, W)`) and prepares the layer.
    pub fn new(model: &'m Model, input: &Tensor, layer: NodeId) -> Result<Self> {
        let acts = model.graph.forward(input, &Keep::All)?;
        CamSession::from_activations(model, input, acts, layer)
    }

    /// Uses a forward pass already made with [`Keep::All`] (the explorer's per-image cache).
    pub fn from_activations(
        model: &'m Model,
        input: &Tensor,
        acts: Activations,
        layer: NodeId,
    ) -> Result<Self> {
        let node = model.graph.node(layer);
        let a = acts
            .get(layer)
            .context("the forward pass did not keep the layer")?;
        // The sizes of this pass, which are the graph's own only at the model's input size.
        let [_, c, h, w] = a.dims()[..] else {
            bail!(
                "layer {} has no spatial output (shape {:?}); pick a convolutional layer",
                node.name,
                &a.dims()[1..]
            );
        };
        let data: Vec<f32> = a.get(0)?.flatten_all()?.to_vec1()?;
        let activation = data.chunks(h * w).map(<[f32]>::to_vec).collect::<Vec<_>>();
        debug_assert_eq!(activation.len(), c);
        let outputs: Vec<f32> = acts
            .get(model.graph.output())
            .context("the forward pass kept no output")?
            .get(0)?
            .flatten_all()?
            .to_vec1()?;
        let head = model.require_head()?;
        let logits = head.scores(&outputs);
        Ok(CamSession {
            model,
            layer,
            input: input.clone(),
            acts,
            activation,
            layer_size: (h, w),
            logits,
            head,
            gradients: HashMap::new(),
            masked_logits: None,
        })
    }

    pub fn logits(&self) -> &[f32] {
        &self.logits
    }

    /// The top-scoring class.
    pub fn top_class(&self) -> usize {
        self.logits
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .map_or(0, |(i, _)| i)
    }

    fn layer_name(&self) -> &str {
        &self.model.graph.node(self.layer).name
    }

    /// A gradient method's raw map: `weigh(activations, gradients)` for the class's gradient.
    fn gradient_map(&mut self, class: usize, weigh: Weighing) -> Result<Vec<f32>> {
        let acts = std::mem::take(&mut self.activation);
        let raw = self.gradient(class).map(|grads| weigh(&acts, grads));
        self.activation = acts;
        raw
    }

    /// d score[class] / d layer output, from the kept forward pass (cached per class). Where
    /// no convolution lies between the layer and the output (a default CAM layer), the top
    /// classes' gradients come in the same reverse pass, so switching among them is free.
    fn gradient(&mut self, class: usize) -> Result<&Vec<Vec<f32>>> {
        if !self.gradients.contains_key(&class) {
            let g = &self.model.graph;
            let mut classes = vec![class];
            if !g.convolves_between(self.layer, g.output())? {
                let top = top_classes(&self.logits, GRADIENTS_AT_ONCE);
                classes.extend(
                    top.into_iter()
                        .filter(|c| *c != class && !self.gradients.contains_key(c)),
                );
            }
            let outputs = g.node(g.output()).shape[1..].iter().product();
            let seeds: Vec<f32> = classes
                .iter()
                .flat_map(|&c| self.head.seed(c, outputs))
                .collect();
            let seeds = Tensor::from_vec(seeds, (classes.len(), outputs), &self.model.device)?;
            let grads = g.gradients(&self.acts, self.layer, g.output(), &seeds)?;
            let (h, w) = self.layer_size;
            for (k, &c) in classes.iter().enumerate() {
                let data: Vec<f32> = grads.get(k)?.flatten_all()?.to_vec1()?;
                if c == class && data.iter().all(|&v| v == 0.0) {
                    bail!(
                        "the gradient of '{}' w.r.t. {} is zero everywhere, so a gradient map would mean nothing; try another layer, class or method (eigencam needs no gradient)",
                        self.model.labels[class],
                        self.layer_name()
                    );
                }
                self.gradients
                    .insert(c, data.chunks(h * w).map(<[f32]>::to_vec).collect());
            }
        }
        Ok(&self.gradients[&class])
    }

    /// Computes one map.
    pub fn compute(&mut self, method: CamMethod, class: usize) -> Result<CamMap> {
        if class >= self.logits.len() {
            bail!(
                "class {class} is out of range: the model has {} classes",
                self.logits.len()
            );
        }
        let raw = match method {
            CamMethod::Eigencam => methods::eigen_cam(&self.activation),
            CamMethod::Cam => {
                let w = self.classifier_weights(class)?;
                methods::weighted_sum(&self.activation, &w)
            }
            CamMethod::Scorecam => {
                let w = self.score_cam_weights(class)?;
                methods::weighted_sum(&self.activation, &w)
            }
            CamMethod::Gradcam => self.gradient_map(class, methods::grad_cam)?,
            CamMethod::Gradcamplusplus => self.gradient_map(class, methods::grad_cam_plus_plus)?,
            CamMethod::Hirescam => self.gradient_map(class, methods::hires_cam)?,
            CamMethod::Xgradcam => self.gradient_map(class, methods::xgrad_cam)?,
            CamMethod::Layercam => self.gradient_map(class, methods::layer_cam)?,
        };
        let relu: Vec<f32> = raw
            .iter()
            .map(|&v| if v.is_nan() { 0.0 } else { v.max(0.0) })
            .collect();
        let empty = relu.iter().all(|&v| v == 0.0);
        let uniform = relu.iter().all(|&v| v == relu[0]);
        let layer_map = min_max(&relu);
        let (_, _, hh, ww) = self.input.dims4()?;
        let map = min_max(&resize_bilinear(
            &layer_map,
            self.layer_size,
            (hh, ww),
            false,
        ));
        Ok(CamMap {
            method,
            class,
            score: self.logits[class],
            layer_map,
            layer_size: self.layer_size,
            map,
            size: (hh, ww),
            empty,
            uniform,
        })
    }

    /// Classic CAM's weights: the row of the final linear layer, when the network ends in
    /// global average pooling of this layer, flatten and linear.
    fn classifier_weights(&self, class: usize) -> Result<Vec<f32>> {
        let g = &self.model.graph;
        let out = g.node(g.output());
        let skip = |mut id: NodeId| {
            while matches!(g.node(id).op, Op::Dropout(_) | Op::Flatten(_)) {
                id = g.node(id).inputs[0];
            }
            id
        };
        let Op::Linear(Linear { weight, .. }) = &out.op else {
            bail!("classic CAM needs a model that ends in a linear layer");
        };
        let gap_node = g.node(skip(out.inputs[0]));
        let Op::AdaptiveAvgPool(AdaptiveAvgPool { out_h: 1, out_w: 1 }) = gap_node.op else {
            bail!(
                "classic CAM needs global average pooling before the last linear layer; use gradcam"
            );
        };
        let pooled = gap_node.inputs[0];
        if pooled != self.layer {
            bail!(
                "classic CAM works at the layer that feeds global average pooling: {}",
                g.node(pooled).name
            );
        }
        Ok(weight.get(class)?.to_vec1()?)
    }

    /// Score-CAM's weights: softmax over channels of the class logit of each masked input.
    fn score_cam_weights(&mut self, class: usize) -> Result<Vec<f32>> {
        if self.masked_logits.is_none() {
            self.masked_logits = Some(self.masked_forwards()?);
        }
        let scores: Vec<f32> = self
            .masked_logits
            .as_ref()
            .expect("set above")
            .iter()
            .map(|row| self.head.scores(row)[class])
            .collect();
        let max = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let exp: Vec<f32> = scores.iter().map(|s| (s - max).exp()).collect();
        let sum: f32 = exp.iter().sum();
        Ok(exp.iter().map(|e| e / sum).collect())
    }

    /// One forward pass per channel of the input masked by that channel (upsampled with
    /// aligned corners, min-max scaled), in batches that fit [`SCORE_CAM_BUDGET_BYTES`].
    fn masked_forwards(&self) -> Result<Vec<Vec<f32>>> {
        let (_, _, hh, ww) = self.input.dims4()?;
        let per_image: usize = self
            .model
            .graph
            .nodes()
            .iter()
            .map(|n| n.shape.iter().product::<usize>())
            .sum();
        let batch = (SCORE_CAM_BUDGET_BYTES / (per_image * 4 * 2).max(1)).clamp(1, 64);
        let masks: Vec<Vec<f32>> = self
            .activation
            .iter()
            .map(|a| {
                let up = resize_bilinear(a, self.layer_size, (hh, ww), true);
                let (lo, hi) = up
                    .iter()
                    .fold((f32::INFINITY, f32::NEG_INFINITY), |(l, h), &v| {
                        (l.min(v), h.max(v))
                    });
                up.iter().map(|&v| (v - lo) / (hi - lo + 1e-8)).collect()
            })
            .collect();
        let mut rows = Vec::with_capacity(masks.len());
        for chunk in masks.chunks(batch) {
            let flat: Vec<f32> = chunk.iter().flatten().copied().collect();
            let m = Tensor::from_vec(flat, (chunk.len(), 1, hh, ww), &self.model.device)?;
            let x = self.input.broadcast_mul(&m)?;
            let acts = self.model.graph.forward(&x, &Keep::Only(vec![]))?;
            let logits = acts.get(self.model.graph.output()).context("no output")?;
            let logits = logits.flatten_from(1)?;
            debug_assert_eq!(
                self.head.scores(&vec![0.0; logits.dim(D::Minus1)?]).len(),
                self.logits.len()
            );
            rows.extend(logits.to_vec2::<f32>()?);
        }
        Ok(rows)
    }
}
