//! The walk from an ONNX graph to the engine's: each node becomes one of the engine's ops (with
//! its initializers as weights), an alias of its input (`Identity`, `Dropout`), or a constant
//! folded at load (`Constant`, `Shape`, `Gather`, ... as exporters emit around `Reshape`). A node
//! outside the set is refused with one line naming it. The conversions live by kind of node:
//! [`super::layers`] (weights), [`super::elementwise`], [`super::pooling`], [`super::channels`]
//! and [`super::shapes`] (moves and constant folding); this file holds the walk, the values and
//! the dispatch.
//!
//! Values carry a layout: PyTorch exports a channels-last stretch (ConvNeXt's
//! `permute → LayerNorm → Linear → GELU → Linear → permute`) as `Transpose` nodes around ops on
//! the last axis. The engine keeps such a value in NCHW and remembers that the graph sees it
//! transposed, so the stretch becomes channel LayerNorm and 1x1 convolutions; ops that need the
//! graph's own axes refuse a transposed value.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use candle_core::{Device, Tensor};

use super::attributes::Attributes;
use super::names;
use super::patterns::{self, Fusions};
use super::proto::{GraphProto, NodeProto};
use super::tensors::{self, Constant};
use crate::model::graph::{Graph, NodeId};
use crate::model::ops::{Function, Op};

/// An imported graph and what was left out of it.
pub struct Imported {
    pub graph: Graph,
    /// The graph ended in a `Softmax` or `Sigmoid`, left off so that the graph's output is the
    /// logits (class activation maps and filter objectives use logits, as pytorch-grad-cam does);
    /// predictions apply the head's own function.
    pub dropped_output: Option<&'static str>,
}

/// How the ONNX graph sees a node's (NCHW) output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// As it is: `(N, C, H, W)`, or `(N, features)`.
    Nchw,
    /// Transposed to `(N, H, W, C)` by a `Transpose` with `perm = [0, 2, 3, 1]`.
    Nhwc,
    /// Flattened to one axis by a `Reshape` to `[-1]` (the dynamo exporter's `as_strided`, a
    /// `Gather` of every element in order, reads it back).
    Flat,
    /// Zero-padded by a `Pad` node (top, bottom, left, right), folded into the convolution or
    /// pooling that reads it (Keras's `ZeroPadding2D` before a "valid" convolution).
    Padded([usize; 4]),
}

/// A value of the ONNX graph: a node's output or a constant.
pub(super) enum Value {
    Node(NodeId, Layout),
    Const(Constant),
}

/// What one ONNX node becomes.
pub(super) enum Outcome {
    /// A node of the engine's graph, labelled `label` inside its module, its output seen in
    /// `Layout`.
    Node(&'static str, Op, Vec<NodeId>, Layout),
    /// The same value as the named input.
    Alias(String),
    /// The same node's output, seen in another layout.
    Relayout(NodeId, Layout),
    Const(Constant),
    /// Computed inside a fused function ([`patterns`]); read by nothing else.
    Absorbed,
}

/// A node of the engine's graph before its name is known (names need every node's module).
pub(super) struct Pending {
    pub(super) path: Option<String>,
    pub(super) label: &'static str,
    pub(super) op: Op,
    pub(super) inputs: Vec<NodeId>,
    pub(super) shape: Vec<usize>,
}

pub(super) struct Walk<'a> {
    pub(super) values: HashMap<String, Value>,
    pub(super) pending: Vec<Pending>,
    pub(super) input_shape: Vec<usize>,
    pub(super) folder: &'a Path,
    pub(super) device: &'a Device,
    pub(super) graph: &'a GraphProto,
    pub(super) fusions: Fusions,
    /// The scope tf2onnx puts every node under (the Keras model's name), left out of names.
    pub(super) model_scope: Option<String>,
    /// How many nodes read each value.
    pub(super) uses: HashMap<String, usize>,
}

/// The graph's image input: its name, size, and how the graph sees it (NCHW, or NHWC as
/// TensorFlow graphs take it).
pub struct ImageInput {
    pub name: String,
    pub channels: usize,
    pub height: usize,
    pub width: usize,
    pub layout: Layout,
}

/// Builds the engine's graph for `graph`, written by `producer` (ModelProto's
/// `producer_name`).
pub fn import(
    graph: &GraphProto,
    input: &ImageInput,
    producer: &str,
    folder: &Path,
    device: &Device,
) -> Result<Imported> {
    let (c, h, w) = (input.channels, input.height, input.width);
    let mut walk = Walk {
        values: HashMap::new(),
        pending: Vec::new(),
        input_shape: vec![1, c, h, w],
        folder,
        device,
        graph,
        fusions: Fusions::default(),
        model_scope: (producer == "tf2onnx")
            .then(|| names::model_scope(&graph.node))
            .flatten(),
        uses: HashMap::new(),
    };
    for init in &graph.initializer {
        let name = init.name.clone().unwrap_or_default();
        walk.values
            .insert(name, Value::Const(tensors::read(init, folder)?));
    }
    for n in &graph.node {
        for i in &n.input {
            *walk.uses.entry(i.clone()).or_default() += 1;
        }
    }
    let constants = constant_nodes(graph, folder);
    walk.fusions = patterns::find(graph, &|name: &str| match walk.values.get(name) {
        Some(Value::Const(c)) => Some(c.clone()),
        _ => constants.get(name).cloned(),
    });
    walk.values
        .insert(input.name.clone(), Value::Node(0, input.layout));
    let output_name = graph
        .output
        .first()
        .and_then(|o| o.name.clone())
        .ok_or_else(|| anyhow!("the graph has no output"))?;
    let mut dropped_output = None;
    for node in &graph.node {
        let op_type = node.op_type.as_deref().unwrap_or("");
        let name = node.name.as_deref().unwrap_or("(unnamed)");
        if op_type == "Split" {
            // The one node with several outputs: a slice of channels each.
            walk.split(node)
                .with_context(|| format!("ONNX node '{name}' ({op_type})"))?;
            continue;
        }
        let outcome = if let Some(f) = final_function(node, &output_name) {
            dropped_output = Some(f);
            Outcome::Alias(walk.input_name(node, 0)?)
        } else {
            walk.convert(node)
                .with_context(|| format!("ONNX node '{name}' ({op_type})"))?
        };
        let Some(out) = node.output.first() else {
            continue;
        };
        let value = match outcome {
            Outcome::Node(label, op, inputs, layout) => {
                let id = walk
                    .push(node, label, op, inputs)
                    .with_context(|| format!("ONNX node '{name}' ({op_type})"))?;
                Value::Node(id, layout)
            }
            Outcome::Alias(of) => match walk.values.get(&of) {
                Some(Value::Node(id, layout)) => Value::Node(*id, *layout),
                Some(Value::Const(c)) => Value::Const(c.clone()),
                None => bail!("ONNX node '{name}' ({op_type}) reads '{of}', which no node makes"),
            },
            Outcome::Relayout(id, layout) => Value::Node(id, layout),
            Outcome::Const(c) => Value::Const(c),
            Outcome::Absorbed => continue,
        };
        walk.values.insert(out.clone(), value);
    }
    // The engine's output is its last node: the graph's output must be that node, as computed.
    match walk.values.get(&output_name) {
        Some(Value::Node(id, Layout::Nchw)) if *id == walk.pending.len() && *id > 0 => {}
        Some(Value::Node(..)) => {
            bail!("the graph's output '{output_name}' is not its last computed value")
        }
        Some(Value::Const(_)) | None => {
            bail!("the graph's output '{output_name}' does not depend on the image")
        }
    }
    let mut labels: Vec<(Option<String>, String)> = walk
        .pending
        .iter()
        .map(|p| (p.path.clone(), p.label.to_string()))
        .collect();
    match producer {
        "pytorch" => names::number_calls(&mut labels),
        "tf2onnx" => names::drop_keras_call_suffix(&mut labels),
        _ => {}
    }
    let names = names::assign(&labels);
    let mut g = Graph::new(c, h, w);
    for (p, name) in walk.pending.into_iter().zip(names) {
        g.add(name, p.op, &p.inputs).map_err(|e| anyhow!(e))?;
    }
    // An output of one vector per image is the class scores (a Linear, or SqueezeNet's pooled
    // convolution); a spatial output is a backbone's.
    if g.node(g.output()).shape.len() == 2 {
        g.set_classifier(g.output());
    }
    Ok(Imported {
        graph: g,
        dropped_output,
    })
}

/// A `Softmax` or `Sigmoid` whose output is the graph's: left off (see [`Imported`]).
fn final_function(node: &NodeProto, output: &str) -> Option<&'static str> {
    if node.output.first().map(String::as_str) != Some(output) {
        return None;
    }
    match node.op_type.as_deref() {
        Some("Softmax") => Some("Softmax"),
        Some("Sigmoid") => Some("Sigmoid"),
        _ => None,
    }
}

/// The values of the graph's `Constant` nodes, for the patterns' scalars.
fn constant_nodes(graph: &GraphProto, folder: &Path) -> HashMap<String, Constant> {
    graph
        .node
        .iter()
        .filter(|n| n.op_type.as_deref() == Some("Constant"))
        .filter_map(|n| {
            let value = Attributes::of(n).tensor("value").ok()?;
            Some((
                n.output.first()?.clone(),
                tensors::read(value, folder).ok()?,
            ))
        })
        .collect()
}

impl Walk<'_> {
    pub(super) fn shape(&self, id: NodeId) -> &[usize] {
        if id == 0 {
            &self.input_shape
        } else {
            &self.pending[id - 1].shape
        }
    }

    pub(super) fn push(
        &mut self,
        node: &NodeProto,
        label: &'static str,
        op: Op,
        inputs: Vec<NodeId>,
    ) -> Result<NodeId> {
        let shapes: Vec<&[usize]> = inputs.iter().map(|&i| self.shape(i)).collect();
        let shape = op.output_shape(&shapes).map_err(|e| anyhow!(e))?;
        self.pending.push(Pending {
            path: names::module_path(node, self.model_scope.as_deref()),
            label,
            op,
            inputs,
            shape,
        });
        Ok(self.pending.len())
    }

    /// The name of input `k`, which the node must have.
    pub(super) fn input_name(&self, node: &NodeProto, k: usize) -> Result<String> {
        node.input
            .get(k)
            .filter(|n| !n.is_empty())
            .cloned()
            .ok_or_else(|| anyhow!("has no input {k}"))
    }

    pub(super) fn value(&self, node: &NodeProto, k: usize) -> Result<&Value> {
        let name = &self.input_name(node, k)?;
        self.values.get(name).ok_or_else(|| {
            if self.made_later(name) {
                anyhow!("reads '{name}' before the node that makes it (the graph has a cycle or is out of order)")
            } else {
                anyhow!("reads '{name}', which no node makes")
            }
        })
    }

    /// Whether some node of the graph makes `name` (one not reached yet, since its value is
    /// unknown).
    fn made_later(&self, name: &str) -> bool {
        self.graph
            .node
            .iter()
            .any(|n| n.output.iter().any(|o| o == name))
    }

    /// Input `k`, which must be computed from the image, in the graph's own axes.
    pub(super) fn computed(&self, node: &NodeProto, k: usize) -> Result<NodeId> {
        match self.computed_any(node, k)? {
            (id, Layout::Nchw) => Ok(id),
            (_, Layout::Nhwc) => bail!(
                "input {k} is a channels-last (transposed) value, which convscope reads only in layer norms, matrix products, per-channel sums and products and activations"
            ),
            (_, Layout::Flat) => bail!(
                "input {k} is flattened to one axis, which convscope reads back only through a Gather of every element in order"
            ),
            (_, Layout::Padded(_)) => bail!(
                "input {k} is zero-padded (Pad), which convscope folds only into a convolution or pooling that reads it"
            ),
        }
    }

    /// Input `k`, which must be computed from the image, with the layout the graph sees.
    pub(super) fn computed_any(&self, node: &NodeProto, k: usize) -> Result<(NodeId, Layout)> {
        match self.value(node, k)? {
            Value::Node(id, layout) => Ok((*id, *layout)),
            Value::Const(_) => {
                bail!("input {k} is a constant where convscope needs a layer's output")
            }
        }
    }

    /// The op of a node made so far (`None` for the input).
    pub(super) fn op_of(&self, id: NodeId) -> Option<&Op> {
        id.checked_sub(1).map(|i| &self.pending[i].op)
    }

    /// Input `k` in NCHW, with the zero padding a `Pad` before it added (top, bottom, left,
    /// right).
    pub(super) fn padded(&self, node: &NodeProto, k: usize) -> Result<(NodeId, [usize; 4])> {
        match self.computed_any(node, k)? {
            (id, Layout::Padded(p)) => Ok((id, p)),
            (_, Layout::Nchw | Layout::Nhwc | Layout::Flat) => {
                Ok((self.computed(node, k)?, [0; 4]))
            }
        }
    }

    /// Input `k`, which must be a constant (a weight, a shape).
    pub(super) fn constant(&self, node: &NodeProto, k: usize) -> Result<&Constant> {
        match self.value(node, k)? {
            Value::Const(c) => Ok(c),
            Value::Node(..) => {
                bail!("input {k} is computed from the image where convscope needs a constant")
            }
        }
    }

    pub(super) fn optional_constant(
        &self,
        node: &NodeProto,
        k: usize,
    ) -> Result<Option<&Constant>> {
        if node.input.get(k).is_none_or(|n| n.is_empty()) {
            return Ok(None);
        }
        self.constant(node, k).map(Some)
    }

    pub(super) fn tensor(&self, c: &Constant, shape: &[usize]) -> Result<Tensor> {
        c.tensor(shape, self.device)
    }

    fn convert(&mut self, node: &NodeProto) -> Result<Outcome> {
        let a = Attributes::of(node);
        let op_type = node.op_type.as_deref().unwrap_or("");
        if !node.domain.as_deref().unwrap_or("").is_empty()
            && node.domain.as_deref() != Some("ai.onnx")
        {
            bail!(
                "is in domain '{}', which convscope does not read",
                node.domain.as_deref().unwrap_or("")
            );
        }
        if let Some(out) = node.output.first() {
            if self.fusions.absorbed.contains(out) {
                return Ok(Outcome::Absorbed);
            }
            if let Some((f, x)) = self.fusions.functions.get(out) {
                return self.fused(*f, x);
            }
        }
        Ok(match op_type {
            "Conv" => self.conv(node, &a)?,
            "Transpose" => self.transpose(node, &a)?,
            "LayerNormalization" => self.layer_norm(node, &a)?,
            "BatchNormalization" => self.batch_norm(node, &a)?,
            "Relu" => self.relu(node)?,
            "LeakyRelu" => self.leaky_relu(node, &a)?,
            "Clip" => self.clip(node, &a)?,
            "Sigmoid" => self.activation(node, Function::Sigmoid)?,
            "HardSigmoid" => self.hard_sigmoid(node, &a)?,
            "HardSwish" => self.activation(node, Function::Hardswish)?,
            "Gelu" => self.gelu(node, &a)?,
            "Add" | "Sub" | "Mul" | "Div" if self.all_constant(node) => {
                self.arithmetic(node, op_type)?
            }
            "Slice" => self.slice(node)?,
            "Mul" => self.mul(node)?,
            "Sub" => self.sub(node)?,
            "Div" => self.div(node)?,
            "Add" => self.add(node)?,
            "MaxPool" | "AveragePool" => self.pool(node, &a, op_type == "MaxPool")?,
            "Pad" => self.pad(node, &a)?,
            "GlobalAveragePool" => self.global_average_pool(node)?,
            "GlobalMaxPool" => self.global_max_pool(node)?,
            "ReduceMean" => self.reduce_mean(node, &a)?,
            "Flatten" => self.flatten(node, &a)?,
            "Reshape" => self.reshape(node)?,
            "Gemm" => self.gemm(node, &a)?,
            "MatMul" => self.matmul(node)?,
            "Concat" => self.concat(node, &a)?,
            "Dropout" | "Identity" => Outcome::Alias(self.input_name(node, 0)?),
            "Constant" => Outcome::Const(tensors::read(a.tensor("value")?, self.folder)?),
            "Shape" => self.shape_of(node)?,
            "Cast" => self.cast(node)?,
            "Gather" => self.gather(node, &a)?,
            "Unsqueeze" | "Squeeze" => self.unsqueeze(node, op_type)?,
            other => bail!("is an operation convscope does not compute ({other})"),
        })
    }
}
