//! The engine's reverse pass: vector-Jacobian products per op, for gradients w.r.t. node outputs
//! only. Weights are constants here, so no kernel gradient is ever computed; a convolution's
//! input gradient is itself a convolution and runs on the forward path.

use candle_core::{Result, Tensor};

use super::conv::conv_input_grad;
use super::cpu;
use super::graph::{Activations, Graph, NodeId};
use super::ops::Op;
use super::pool;

impl Graph {
    /// Gradient of `sum(output(output_id) * grad_output)` w.r.t. the output of node `wrt`.
    ///
    /// `acts` must hold every node between `wrt` and `output_id` (a forward pass with
    /// [`super::graph::Keep::All`], or [`Graph::forward_from`] the cut at `wrt`).
    pub fn gradient(
        &self,
        acts: &Activations,
        wrt: NodeId,
        output_id: NodeId,
        grad_output: &Tensor,
    ) -> Result<Tensor> {
        if wrt > output_id {
            candle_core::bail!(
                "{} comes after {} in the network",
                self.node(wrt).name,
                self.node(output_id).name
            );
        }
        let nodes = self.nodes();
        // Nodes whose output depends on `wrt`: only they carry gradient.
        let mut depends = vec![false; nodes.len()];
        depends[wrt] = true;
        for id in wrt + 1..=output_id {
            depends[id] = nodes[id].inputs.iter().any(|&i| depends[i]);
        }
        if !depends[output_id] {
            candle_core::bail!(
                "{} does not depend on {}",
                nodes[output_id].name,
                nodes[wrt].name
            );
        }
        let mut grads: Vec<Option<Tensor>> = vec![None; nodes.len()];
        grads[output_id] = Some(grad_output.clone());
        for id in (wrt + 1..=output_id).rev() {
            let Some(g) = grads[id].take() else { continue };
            let node = &nodes[id];
            let input_grads = self
                .vjp(acts, id, &g)
                .map_err(|e| candle_core::Error::msg(format!("gradient of {}: {e}", node.name)))?;
            for (&input, ig) in node.inputs.iter().zip(input_grads) {
                if !depends[input] {
                    continue;
                }
                grads[input] = Some(match grads[input].take() {
                    None => ig,
                    Some(acc) => (acc + ig)?,
                });
            }
        }
        grads[wrt]
            .take()
            .ok_or_else(|| candle_core::Error::msg("no gradient reached the layer"))
    }

    /// Gradients w.r.t. each input of node `id`, given the gradient of its output.
    fn vjp(&self, acts: &Activations, id: NodeId, g: &Tensor) -> Result<Vec<Tensor>> {
        let node = self.node(id);
        let value = |i: NodeId| {
            acts.get(i).ok_or_else(|| {
                candle_core::Error::msg(format!(
                    "the output of {} was not kept by the forward pass",
                    self.node(i).name
                ))
            })
        };
        let batch = g.dim(0)?;
        // The kept input's real shape (inputs of any size), else the build-time shape.
        let input_shape = |k: usize| match acts.get(node.inputs[k]) {
            Some(t) => t.dims().to_vec(),
            None => {
                let mut s = self.node(node.inputs[k]).shape.clone();
                s[0] = batch;
                s
            }
        };
        Ok(match &node.op {
            Op::Input => vec![],
            Op::Dropout => vec![g.clone()],
            Op::Add => vec![g.clone(); node.inputs.len()],
            Op::Relu if cpu::handles(g) => vec![cpu::relu::relu_backward(value(id)?, g)?],
            Op::Relu => {
                let mask = value(id)?.gt(0f64)?.to_dtype(g.dtype())?;
                vec![(g * mask)?]
            }
            Op::BatchNorm { scale, .. } if cpu::handles(g) && g.rank() == 4 => {
                vec![cpu::batch_norm::channel_affine(g, scale, None)?]
            }
            Op::BatchNorm { scale, .. } => vec![g.broadcast_mul(scale)?],
            Op::Conv2d(conv) => {
                let s = input_shape(0);
                vec![conv_input_grad(g, conv, (s[2], s[3]))?]
            }
            Op::Pool { kind, geometry } => {
                let x = value(node.inputs[0])?;
                vec![pool::pool_backward(x, value(id)?, g, *kind, geometry)?]
            }
            Op::AdaptiveAvgPool { .. } => {
                let s = input_shape(0);
                vec![pool::adaptive_avg_pool_backward(g, (s[2], s[3]))?]
            }
            Op::Flatten => vec![g.reshape(input_shape(0))?],
            Op::Linear { weight, .. } => vec![g.matmul(weight)?],
            Op::Concat => {
                let mut out = Vec::with_capacity(node.inputs.len());
                let mut start = 0;
                for k in 0..node.inputs.len() {
                    let c = input_shape(k)[1];
                    out.push(g.narrow(1, start, c)?);
                    start += c;
                }
                out
            }
        })
    }
}
