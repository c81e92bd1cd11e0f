//! The engine's reverse pass: each op's vector-Jacobian product (in its own file under
//! [`super::ops`]) chained from an output back to a node, for gradients w.r.t. node outputs only.
//! Weights are constants here, so no kernel gradient is ever computed.

use candle_core::{Result, Tensor};

use super::graph::{Activations, Graph, Keep, NodeId};
use super::ops::{Backward, Op};

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
        let depends = self.dependents(wrt, output_id)?;
        self.gradient_along(acts, &depends, wrt, output_id, grad_output)
    }

    /// [`Graph::gradient`] through the nodes `depends` marks (see [`Graph::dependents`]); on
    /// the CPU, on the pool's workers (see [`super::workers`]).
    fn gradient_along(
        &self,
        acts: &Activations,
        depends: &[bool],
        wrt: NodeId,
        output_id: NodeId,
        grad_output: &Tensor,
    ) -> Result<Tensor> {
        super::workers::on_workers(grad_output.device(), || {
            let nodes = self.nodes();
            let mut grads: Vec<Option<Tensor>> = vec![None; nodes.len()];
            grads[output_id] = Some(grad_output.clone());
            for id in (wrt + 1..=output_id).rev() {
                let Some(g) = grads[id].take() else { continue };
                let node = &nodes[id];
                let input_grads = self.vjp(acts, id, &g).map_err(|e| {
                    candle_core::Error::msg(format!("gradient of {}: {e}", node.name))
                })?;
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
        })
    }

    /// Row `i` of the result is [`Graph::gradient`] for row `i` of `seeds`, all from one pass
    /// of a single image: its kept activations between `wrt` and `output_id` are repeated once
    /// per seed. This pays where the reverse pass is bound by reading weights rather than by the
    /// activations (see [`Graph::convolves_between`]): a VGG head's 400 MB are read once for all
    /// the seeds.
    pub fn gradients(
        &self,
        acts: &Activations,
        wrt: NodeId,
        output_id: NodeId,
        seeds: &Tensor,
    ) -> Result<Tensor> {
        let depends = self.dependents(wrt, output_id)?;
        let path = (wrt..=output_id).filter(|&id| depends[id]);
        let read_on_path =
            path.flat_map(|id| std::iter::once(id).chain(self.node(id).inputs.iter().copied()));
        let repeated = acts.repeated(read_on_path, seeds.dim(0)?)?;
        self.gradient_along(&repeated, &depends, wrt, output_id, seeds)
    }

    /// What a forward pass taken for [`Graph::gradient`] from `output_id` back to `wrt` must
    /// keep: `output_id` and the values the reverse pass reads on the way (see
    /// [`super::ops::Operation::reverse_reads`]). Everything else (a convolution's input, a
    /// ReLU's input) is dropped as soon as the forward pass is done with it.
    pub fn kept_for_gradient(&self, wrt: NodeId, output_id: NodeId) -> Result<Keep> {
        let depends = self.dependents(wrt, output_id)?;
        let mut kept = vec![output_id];
        for id in (wrt + 1..=output_id).filter(|&id| depends[id]) {
            let node = self.node(id);
            let reads = node.op.reverse_reads();
            if reads.inputs {
                kept.extend(&node.inputs);
            }
            if reads.output {
                kept.push(id);
            }
        }
        kept.sort_unstable();
        kept.dedup();
        Ok(Keep::Only(kept))
    }

    /// Whether a convolution lies on the way from `wrt` to `output_id`: its reverse pass costs
    /// the same again for every further seed.
    pub fn convolves_between(&self, wrt: NodeId, output_id: NodeId) -> Result<bool> {
        let depends = self.dependents(wrt, output_id)?;
        Ok(
            (wrt + 1..=output_id)
                .any(|id| depends[id] && matches!(self.node(id).op, Op::Conv2d(_))),
        )
    }

    /// Which nodes' outputs depend on `wrt` (only they carry gradient); an error when
    /// `output_id` does not.
    fn dependents(&self, wrt: NodeId, output_id: NodeId) -> Result<Vec<bool>> {
        if wrt > output_id {
            candle_core::bail!(
                "{} comes after {} in the network",
                self.node(wrt).name,
                self.node(output_id).name
            );
        }
        let nodes = self.nodes();
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
        Ok(depends)
    }

    /// Gradients w.r.t. each input of node `id`, given the gradient of its output.
    fn vjp(&self, acts: &Activations, id: NodeId, g: &Tensor) -> Result<Vec<Tensor>> {
        let node = self.node(id);
        let batch = g.dim(0)?;
        let at = Backward {
            inputs: node.inputs.iter().map(|&i| acts.get(i)).collect(),
            output: acts.get(id),
            // The input's real shape in this pass (inputs of any size), else the build-time
            // shape.
            input_shapes: node
                .inputs
                .iter()
                .map(|&i| match acts.shape(i) {
                    Some(s) => s.to_vec(),
                    None => {
                        let mut s = self.node(i).shape.clone();
                        s[0] = batch;
                        s
                    }
                })
                .collect(),
        };
        node.op.vjp(&at, g)
    }
}
