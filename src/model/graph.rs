//! The network as data: named nodes in topological order, forward passes with capture, and
//! forward passes resumed from a cut point.

use std::collections::HashMap;

use candle_core::{Result, Tensor};

use super::ops::{Input, Op};

/// Index of a node in [`Graph::nodes`]; inputs always have smaller ids than their users.
pub type NodeId = usize;

/// One computation: a PyTorch module path as its name, an op, and its inputs.
#[derive(Debug, Clone)]
pub struct Node {
    pub name: String,
    pub op: Op,
    pub inputs: Vec<NodeId>,
    /// Output shape for a batch of one at the model's input size.
    pub shape: Vec<usize>,
}

/// Which node outputs a forward pass keeps besides the final output.
#[derive(Debug, Clone)]
pub enum Keep {
    /// Every node (what the explorer caches per image, and what gradients need).
    All,
    /// Only these nodes; everything else is dropped as soon as it is no longer needed.
    Only(Vec<NodeId>),
}

/// Node outputs of one forward pass, indexed by [`NodeId`].
#[derive(Debug, Clone)]
pub struct Activations {
    values: Vec<Option<Tensor>>,
    /// The shape of every node output the pass computed or was given, kept or not.
    shapes: Vec<Option<Vec<usize>>>,
}

impl Activations {
    /// The kept output of a node, if it was kept.
    pub fn get(&self, id: NodeId) -> Option<&Tensor> {
        self.values.get(id).and_then(|v| v.as_ref())
    }

    /// The shape of a node's output in this pass, kept or not.
    pub fn shape(&self, id: NodeId) -> Option<&[usize]> {
        self.shapes.get(id).and_then(|s| s.as_deref())
    }

    /// A copy holding only the kept outputs of `ids`, each repeated `times` along the batch
    /// (a one-image pass made ready for several gradient seeds at once).
    pub fn repeated(&self, ids: impl Iterator<Item = NodeId>, times: usize) -> Result<Activations> {
        let mut values = vec![None; self.values.len()];
        for id in ids {
            if let Some(t) = self.get(id).filter(|_| values[id].is_none()) {
                let mut reps = vec![1; t.rank()];
                reps[0] = times;
                values[id] = Some(t.repeat(reps)?);
            }
        }
        let shapes = self
            .shapes
            .iter()
            .map(|s| {
                s.clone().map(|mut s| {
                    s[0] *= times;
                    s
                })
            })
            .collect();
        Ok(Activations { values, shapes })
    }

    fn require(&self, id: NodeId, graph: &Graph) -> Result<&Tensor> {
        self.get(id).ok_or_else(|| {
            candle_core::Error::msg(format!(
                "the output of {} was not kept by the forward pass",
                graph.nodes[id].name
            ))
        })
    }
}

/// A directed acyclic graph of named nodes; node 0 is the input image.
#[derive(Debug, Clone)]
pub struct Graph {
    nodes: Vec<Node>,
    by_name: HashMap<String, NodeId>,
    /// The layer whose outputs are the class scores; `None` for a backbone without a head.
    classifier: Option<NodeId>,
}

/// Why a layer name could not be resolved, with the nearest names to suggest.
#[derive(Debug, Clone, thiserror::Error)]
#[error("unknown layer '{name}'{}", suggestion(.nearest))]
pub struct UnknownLayer {
    pub name: String,
    pub nearest: Vec<String>,
}

fn suggestion(nearest: &[String]) -> String {
    if nearest.is_empty() {
        String::new()
    } else {
        format!("; did you mean {}?", nearest.join(", "))
    }
}

impl Graph {
    /// Starts a graph whose input node has shape `(1, channels, height, width)`.
    pub fn new(channels: usize, height: usize, width: usize) -> Self {
        let input = Node {
            name: "input".into(),
            op: Op::Input(Input),
            inputs: vec![],
            shape: vec![1, channels, height, width],
        };
        Graph {
            by_name: HashMap::from([("input".to_string(), 0)]),
            nodes: vec![input],
            classifier: None,
        }
    }

    /// The layer whose outputs are the class scores, if the network has a classification head.
    pub fn classifier(&self) -> Option<NodeId> {
        self.classifier
    }

    /// Changes the input's channel count, before any node reads the input.
    pub fn set_input_channels(&mut self, channels: usize) -> std::result::Result<(), String> {
        if self.nodes.iter().any(|n| n.inputs.contains(&0)) {
            return Err("the input's channels are fixed once a layer reads it".into());
        }
        self.nodes[0].shape[1] = channels;
        Ok(())
    }

    /// Marks `id` as the classification head's output.
    pub fn set_classifier(&mut self, id: NodeId) {
        self.classifier = Some(id);
    }

    /// Appends a node, checking its input shapes; returns its id.
    pub fn add(
        &mut self,
        name: impl Into<String>,
        op: Op,
        inputs: &[NodeId],
    ) -> std::result::Result<NodeId, String> {
        let name = name.into();
        if self.by_name.contains_key(&name) {
            return Err(format!("duplicate layer name {name}"));
        }
        let shapes: Vec<&[usize]> = inputs
            .iter()
            .map(|&i| self.nodes[i].shape.as_slice())
            .collect();
        let shape = op
            .output_shape(&shapes)
            .map_err(|e| format!("layer {name}: {e}"))?;
        let id = self.nodes.len();
        self.by_name.insert(name.clone(), id);
        self.nodes.push(Node {
            name,
            op,
            inputs: inputs.to_vec(),
            shape,
        });
        Ok(id)
    }

    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    pub fn node(&self, id: NodeId) -> &Node {
        &self.nodes[id]
    }

    pub fn input(&self) -> NodeId {
        0
    }

    /// The last node: the network's output (logits for a classifier).
    pub fn output(&self) -> NodeId {
        self.nodes.len() - 1
    }

    /// `(channels, height, width)` of the input image.
    pub fn input_size(&self) -> (usize, usize, usize) {
        let s = &self.nodes[0].shape;
        (s[1], s[2], s[3])
    }

    pub fn parameter_count(&self) -> usize {
        self.nodes.iter().map(|n| n.op.parameter_count()).sum()
    }

    /// Resolves a node name or a module path: a module stands for its last node, as
    /// `model.layer4` in PyTorch yields the output of its last block.
    pub fn find(&self, name: &str) -> std::result::Result<NodeId, UnknownLayer> {
        if let Some(&id) = self.by_name.get(name) {
            return Ok(id);
        }
        let prefix = format!("{name}.");
        if let Some(id) = self.nodes.iter().rposition(|n| n.name.starts_with(&prefix)) {
            return Ok(id);
        }
        Err(UnknownLayer {
            name: name.to_string(),
            nearest: self.nearest_names(name, 3),
        })
    }

    /// Every name [`Graph::find`] accepts: node names and the module paths above them.
    pub fn layer_names(&self) -> Vec<String> {
        let mut names: Vec<String> = Vec::new();
        for n in &self.nodes {
            let parts: Vec<&str> = n.name.split('.').collect();
            for i in 1..=parts.len() {
                let p = parts[..i].join(".");
                if !names.contains(&p) {
                    names.push(p);
                }
            }
        }
        names
    }

    fn nearest_names(&self, name: &str, count: usize) -> Vec<String> {
        let mut scored: Vec<(usize, String)> = self
            .layer_names()
            .into_iter()
            .map(|n| (strsim::levenshtein(name, &n), n))
            .collect();
        scored.sort();
        let limit = (name.len() / 2).max(3);
        scored
            .into_iter()
            .filter(|(d, _)| *d <= limit)
            .take(count)
            .map(|(_, n)| n)
            .collect()
    }

    /// Runs the whole graph on `input` (NCHW, any batch size).
    pub fn forward(&self, input: &Tensor, keep: &Keep) -> Result<Activations> {
        self.forward_to(input, self.output(), keep)
    }

    /// Runs the graph up to and including node `stop` (nothing after it is computed).
    pub fn forward_to(&self, input: &Tensor, stop: NodeId, keep: &Keep) -> Result<Activations> {
        let mut values = vec![None; self.nodes.len()];
        values[0] = Some(input.clone());
        self.run(values, 1, stop, keep)
    }

    /// Runs the graph after node `cut` with `value` in place of its output. Nodes before the cut
    /// that later nodes read (residual branches) are taken from `base`.
    pub fn forward_from(
        &self,
        base: &Activations,
        cut: NodeId,
        value: &Tensor,
        keep: &Keep,
    ) -> Result<Activations> {
        let mut values = vec![None; self.nodes.len()];
        for id in self.frontier(cut) {
            values[id] = Some(base.require(id, self)?.clone());
        }
        values[cut] = Some(value.clone());
        self.run(values, cut + 1, self.output(), keep)
    }

    /// Nodes before `cut` (and `cut` itself) whose outputs are read by nodes after it.
    pub fn frontier(&self, cut: NodeId) -> Vec<NodeId> {
        let mut ids: Vec<NodeId> = self.nodes[cut + 1..]
            .iter()
            .flat_map(|n| n.inputs.iter().copied())
            .filter(|&i| i < cut)
            .collect();
        ids.sort_unstable();
        ids.dedup();
        ids
    }

    /// Bytes a pass will hold, from a `value` it is given for node `id`: every node output
    /// through `stop` when all are kept (twice that, for the reverse pass they are kept for),
    /// else the kept ones and the largest few at once.
    fn pass_bytes(&self, (id, value): (NodeId, &[usize]), stop: NodeId, keep: &Keep) -> u64 {
        let planned = self.nodes[id].shape.iter().product::<usize>().max(1);
        let scale = value.iter().product::<usize>() as f64 / planned as f64;
        let size = |n: &Node| n.shape.iter().product::<usize>() as f64;
        let floats = self.nodes[..=stop].iter().map(size);
        let floats = match keep {
            Keep::All => 2.0 * floats.sum::<f64>(),
            Keep::Only(kept) => {
                let held: f64 = kept
                    .iter()
                    .filter(|&&k| k <= stop)
                    .map(|&k| size(&self.nodes[k]))
                    .sum();
                held + 3.0 * floats.fold(0.0, f64::max)
            }
        };
        (floats * scale * 4.0) as u64
    }

    /// Runs nodes `start..=stop` (on the CPU, on the pool's workers: see [`super::workers`]).
    fn run(
        &self,
        values: Vec<Option<Tensor>>,
        start: NodeId,
        stop: NodeId,
        keep: &Keep,
    ) -> Result<Activations> {
        // The device of the values given (none is given only where nothing will be computed).
        let device = values.iter().flatten().next().map(|v| v.device().clone());
        let device = device.unwrap_or(candle_core::Device::Cpu);
        super::workers::on_workers(&device, || self.run_here(values, start, stop, keep))
    }

    fn run_here(
        &self,
        mut values: Vec<Option<Tensor>>,
        start: NodeId,
        stop: NodeId,
        keep: &Keep,
    ) -> Result<Activations> {
        let given = values
            .iter()
            .enumerate()
            .find_map(|(id, v)| Some((id, v.as_ref()?)));
        if let Some((id, value)) = given {
            let need = self.pass_bytes((id, value.dims()), stop, keep);
            let batch = value.dims().first().copied().unwrap_or(1);
            super::memory::ensure_fits(need, || {
                let images = if batch == 1 { "image" } else { "images" };
                let (_, h, w) = self.input_size();
                let d = value.dims();
                let size = if id == 0 { (d[2], d[3]) } else { (h, w) };
                format!(
                    "the pass through {} ({batch} {images} at {}x{})",
                    self.nodes[stop].name, size.0, size.1
                )
            })
            .map_err(|e| candle_core::Error::Msg(e.to_string()))?;
        }
        let mut shapes: Vec<Option<Vec<usize>>> = values
            .iter()
            .map(|v| v.as_ref().map(|t| t.dims().to_vec()))
            .collect();
        let last_use = match keep {
            Keep::All => None,
            Keep::Only(kept) => {
                let mut last = vec![0usize; self.nodes.len()];
                for (id, n) in self.nodes.iter().enumerate() {
                    for &i in &n.inputs {
                        last[i] = id;
                    }
                }
                for &k in kept {
                    last[k] = usize::MAX;
                }
                last[stop] = usize::MAX;
                Some(last)
            }
        };
        for id in start..=stop {
            let node = &self.nodes[id];
            let inputs = node
                .inputs
                .iter()
                .map(|&i| values[i].as_ref())
                .collect::<Option<Vec<&Tensor>>>()
                .ok_or_else(|| {
                    candle_core::Error::msg(format!("missing an input of {}", node.name))
                })?;
            let out = node
                .op
                .forward(&inputs)
                .map_err(|e| candle_core::Error::msg(format!("layer {}: {e}", node.name)))?;
            shapes[id] = Some(out.dims().to_vec());
            values[id] = Some(out);
            if let Some(last) = &last_use {
                for &i in &node.inputs {
                    if last[i] == id {
                        values[i] = None;
                    }
                }
            }
        }
        Ok(Activations { values, shapes })
    }
}
