//! The walk from an ONNX graph to the engine's: each node becomes one of the engine's ops (with
//! its initializers as weights), an alias of its input (`Identity`, `Dropout`), or a constant
//! folded at load (`Constant`, `Shape`, `Gather`, ... as exporters emit around `Reshape`). A node
//! outside the set is refused with one line naming it.
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
use super::patterns::{self, Fused, Fusions};
use super::proto::{GraphProto, NodeProto};
use super::tensors::{self, Constant};
use crate::model::graph::{Graph, NodeId};
use crate::model::ops::{
    Activation, AdaptiveAvgPool, Add, Axis, BatchNorm, ChannelScale, ChannelShuffle, ChannelSlice,
    Concat, Conv2d, Flatten, Function, Gate, LayerNorm, Linear, Op, Pool, PoolKind, Relu, Window,
};

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
enum Layout {
    /// As it is: `(N, C, H, W)`, or `(N, features)`.
    Nchw,
    /// Transposed to `(N, H, W, C)` by a `Transpose` with `perm = [0, 2, 3, 1]`.
    Nhwc,
}

/// A value of the ONNX graph: a node's output or a constant.
enum Value {
    Node(NodeId, Layout),
    Const(Constant),
}

/// What one ONNX node becomes.
enum Outcome {
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
struct Pending {
    path: Option<String>,
    label: &'static str,
    op: Op,
    inputs: Vec<NodeId>,
    shape: Vec<usize>,
}

struct Walk<'a> {
    values: HashMap<String, Value>,
    pending: Vec<Pending>,
    input_shape: Vec<usize>,
    folder: &'a Path,
    device: &'a Device,
    fusions: Fusions,
    /// How many nodes read each value.
    uses: HashMap<String, usize>,
}

/// Builds the engine's graph for `graph`, its image input `(channels, height, width)`.
pub fn import(
    graph: &GraphProto,
    input_name: &str,
    input: (usize, usize, usize),
    folder: &Path,
    device: &Device,
) -> Result<Imported> {
    let (c, h, w) = input;
    let mut walk = Walk {
        values: HashMap::new(),
        pending: Vec::new(),
        input_shape: vec![1, c, h, w],
        folder,
        device,
        fusions: Fusions::default(),
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
        .insert(input_name.to_string(), Value::Node(0, Layout::Nchw));
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
            Outcome::Alias(node.input[0].clone())
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
    let last = match walk.values.get(&output_name) {
        Some(Value::Node(id, Layout::Nchw)) if *id == walk.pending.len() && *id > 0 => *id,
        Some(Value::Node(..)) => {
            bail!("the graph's output '{output_name}' is not its last computed value")
        }
        _ => bail!("the graph's output '{output_name}' does not depend on the image"),
    };
    debug_assert_eq!(last, walk.pending.len());
    let labels: Vec<(Option<String>, String)> = walk
        .pending
        .iter()
        .map(|p| (p.path.clone(), p.label.to_string()))
        .collect();
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
    fn shape(&self, id: NodeId) -> &[usize] {
        if id == 0 {
            &self.input_shape
        } else {
            &self.pending[id - 1].shape
        }
    }

    fn push(
        &mut self,
        node: &NodeProto,
        label: &'static str,
        op: Op,
        inputs: Vec<NodeId>,
    ) -> Result<NodeId> {
        let shapes: Vec<&[usize]> = inputs.iter().map(|&i| self.shape(i)).collect();
        let shape = op.output_shape(&shapes).map_err(|e| anyhow!(e))?;
        self.pending.push(Pending {
            path: names::module_path(node),
            label,
            op,
            inputs,
            shape,
        });
        Ok(self.pending.len())
    }

    fn value(&self, node: &NodeProto, k: usize) -> Result<&Value> {
        let name = node
            .input
            .get(k)
            .filter(|n| !n.is_empty())
            .ok_or_else(|| anyhow!("has no input {k}"))?;
        self.values
            .get(name)
            .ok_or_else(|| anyhow!("reads '{name}', which no node makes"))
    }

    /// Input `k`, which must be computed from the image, in the graph's own axes.
    fn computed(&self, node: &NodeProto, k: usize) -> Result<NodeId> {
        match self.computed_any(node, k)? {
            (id, Layout::Nchw) => Ok(id),
            (_, Layout::Nhwc) => bail!(
                "input {k} is a channels-last (transposed) value, which convscope reads only in layer norms, matrix products, per-channel sums and products and activations"
            ),
        }
    }

    /// Input `k`, which must be computed from the image, with the layout the graph sees.
    fn computed_any(&self, node: &NodeProto, k: usize) -> Result<(NodeId, Layout)> {
        match self.value(node, k)? {
            Value::Node(id, layout) => Ok((*id, *layout)),
            Value::Const(_) => {
                bail!("input {k} is a constant where convscope needs a layer's output")
            }
        }
    }

    /// Input `k`, which must be a constant (a weight, a shape).
    fn constant(&self, node: &NodeProto, k: usize) -> Result<&Constant> {
        match self.value(node, k)? {
            Value::Const(c) => Ok(c),
            Value::Node(..) => {
                bail!("input {k} is computed from the image where convscope needs a constant")
            }
        }
    }

    fn optional_constant(&self, node: &NodeProto, k: usize) -> Result<Option<&Constant>> {
        if node.input.get(k).is_none_or(|n| n.is_empty()) {
            return Ok(None);
        }
        self.constant(node, k).map(Some)
    }

    fn tensor(&self, c: &Constant, shape: &[usize]) -> Result<Tensor> {
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
                let (x, layout) = match self.values.get(x) {
                    Some(Value::Node(id, layout)) => (*id, *layout),
                    _ => bail!("applies {f:?} to a value not computed from the image"),
                };
                let (label, op) = match f {
                    Fused::Silu => ("silu", Op::Activation(Activation(Function::Silu))),
                    Fused::Gelu => ("gelu", Op::Activation(Activation(Function::Gelu))),
                    Fused::Shuffle(groups) => (
                        "channel_shuffle",
                        Op::ChannelShuffle(ChannelShuffle { groups: *groups }),
                    ),
                };
                return Ok(Outcome::Node(label, op, vec![x], layout));
            }
        }
        Ok(match op_type {
            "Conv" => self.conv(node, &a)?,
            "Transpose" => {
                let (x, layout) = self.computed_any(node, 0)?;
                match (a.ints("perm"), layout) {
                    (Some([0, 2, 3, 1]), Layout::Nchw) => Outcome::Relayout(x, Layout::Nhwc),
                    (Some([0, 3, 1, 2]), Layout::Nhwc) => Outcome::Relayout(x, Layout::Nchw),
                    (perm, _) => bail!(
                        "transposes with perm {perm:?}; convscope follows (N,C,H,W) to (N,H,W,C) and back"
                    ),
                }
            }
            "LayerNormalization" => {
                let (x, layout) = self.computed_any(node, 0)?;
                let axis = a.int("axis", -1);
                if layout != Layout::Nhwc || !(axis == -1 || axis == 3) {
                    bail!("normalises from axis {axis} of a value convscope does not see channels-last; it normalises the channels at every pixel");
                }
                let c = self.shape(x)[1];
                let weight = self.constant(node, 1)?;
                let bias = self
                    .optional_constant(node, 2)?
                    .cloned()
                    .unwrap_or_else(|| Constant::floats(vec![c], vec![0.0; c]));
                if weight.len() != c || bias.len() != c {
                    bail!("has a weight or bias of another length than the {c} channels");
                }
                let op = LayerNorm {
                    weight: self.tensor(weight, &[1, c, 1, 1])?,
                    bias: self.tensor(&bias, &[1, c, 1, 1])?,
                    eps: a.float("epsilon", 1e-5) as f64,
                };
                Outcome::Node("layernorm", Op::LayerNorm(op), vec![x], Layout::Nhwc)
            }
            "BatchNormalization" => {
                let x = self.computed(node, 0)?;
                let eps = a.float("epsilon", 1e-5);
                let consts: Vec<Vec<f32>> = (1..5)
                    .map(|k| self.constant(node, k).map(Constant::to_floats))
                    .collect::<Result<_>>()?;
                let (gamma, beta, mean, var) = (&consts[0], &consts[1], &consts[2], &consts[3]);
                let c = gamma.len();
                if [beta.len(), mean.len(), var.len()] != [c, c, c] {
                    bail!("has parameters of different lengths");
                }
                let scale: Vec<f32> = (0..c).map(|i| gamma[i] / (var[i] + eps).sqrt()).collect();
                let shift: Vec<f32> = (0..c).map(|i| beta[i] - mean[i] * scale[i]).collect();
                let scale = Tensor::from_vec(scale, (1, c, 1, 1), self.device)?;
                let shift = Tensor::from_vec(shift, (1, c, 1, 1), self.device)?;
                Outcome::Node(
                    "batchnorm",
                    Op::BatchNorm(BatchNorm { scale, shift }),
                    vec![x],
                    Layout::Nchw,
                )
            }
            "Relu" => {
                let (x, layout) = self.computed_any(node, 0)?;
                Outcome::Node("relu", Op::Relu(Relu), vec![x], layout)
            }
            "Clip" => self.clip(node, &a)?,
            "Sigmoid" => self.activation(node, Function::Sigmoid)?,
            "HardSigmoid" => {
                let (alpha, beta) = (a.float("alpha", 0.2), a.float("beta", 0.5));
                if (alpha - 1.0 / 6.0).abs() > 1e-6 || (beta - 0.5).abs() > 1e-6 {
                    bail!("has alpha {alpha} and beta {beta}; convscope computes PyTorch's (1/6, 0.5)");
                }
                self.activation(node, Function::Hardsigmoid)?
            }
            "HardSwish" => self.activation(node, Function::Hardswish)?,
            "Gelu" => match a.text("approximate").as_deref() {
                None | Some("none") => self.activation(node, Function::Gelu)?,
                Some(other) => {
                    bail!("has approximate = '{other}'; convscope computes the exact GELU")
                }
            },
            "Add" | "Sub" | "Mul" | "Div" if self.all_constant(node) => {
                self.arithmetic(node, op_type)?
            }
            "Slice" => self.slice(node)?,
            "Mul" => self.mul(node)?,
            "Add" => self.add(node)?,
            "MaxPool" | "AveragePool" => self.pool(node, &a, op_type == "MaxPool")?,
            "GlobalAveragePool" => Outcome::Node(
                "avgpool",
                Op::AdaptiveAvgPool(AdaptiveAvgPool { out_h: 1, out_w: 1 }),
                vec![self.computed(node, 0)?],
                Layout::Nchw,
            ),
            "ReduceMean" => {
                let x = self.computed(node, 0)?;
                let axes: Vec<i64> = match self.optional_constant(node, 1)? {
                    Some(c) => c.as_ints().unwrap_or_default().to_vec(),
                    None => a.ints("axes").unwrap_or_default().to_vec(),
                };
                let rank = self.shape(x).len() as i64;
                let mut axes: Vec<i64> = axes
                    .iter()
                    .map(|&v| if v < 0 { v + rank } else { v })
                    .collect();
                axes.sort_unstable();
                if axes != [2, 3] || rank != 4 {
                    bail!("averages axes {axes:?}; convscope reads the mean over height and width");
                }
                let pool = Op::AdaptiveAvgPool(AdaptiveAvgPool { out_h: 1, out_w: 1 });
                if a.int("keepdims", 1) != 0 {
                    Outcome::Node("avgpool", pool, vec![x], Layout::Nchw)
                } else {
                    // `x.mean([2, 3])`: the pooling, then its (N, C) view.
                    let pooled = self.push(node, "avgpool", pool, vec![x])?;
                    Outcome::Node("flatten", Op::Flatten(Flatten), vec![pooled], Layout::Nchw)
                }
            }
            "Flatten" => {
                let x = self.computed(node, 0)?;
                if a.int("axis", 1) != 1 {
                    bail!(
                        "flattens from axis {}; convscope flattens after the batch axis",
                        a.int("axis", 1)
                    );
                }
                Outcome::Node("flatten", Op::Flatten(Flatten), vec![x], Layout::Nchw)
            }
            "Reshape" => self.reshape(node)?,
            "Gemm" => self.gemm(node, &a)?,
            "MatMul" => self.matmul(node)?,
            "Concat" => {
                if node
                    .input
                    .iter()
                    .all(|i| matches!(self.values.get(i), Some(Value::Const(_))))
                {
                    return self.concat_constants(node, &a);
                }
                let rank = self.shape(self.computed(node, 0)?).len() as i64;
                let axis = a.int("axis", 1);
                if axis != 1 && axis != 1 - rank {
                    bail!("concatenates along axis {axis}; convscope concatenates channels");
                }
                let inputs = (0..node.input.len())
                    .map(|k| self.computed(node, k))
                    .collect::<Result<Vec<_>>>()?;
                Outcome::Node("concat", Op::Concat(Concat), inputs, Layout::Nchw)
            }
            "Dropout" | "Identity" => Outcome::Alias(node.input[0].clone()),
            "Constant" => Outcome::Const(tensors::read(a.tensor("value")?, self.folder)?),
            "Shape" => {
                let x = self.computed(node, 0)?;
                let dims: Vec<i64> = self.shape(x).iter().map(|&d| d as i64).collect();
                Outcome::Const(Constant::ints(vec![dims.len()], dims))
            }
            "Cast" => match self.value(node, 0)? {
                Value::Const(c) => Outcome::Const(c.clone()),
                Value::Node(..) => Outcome::Alias(node.input[0].clone()),
            },
            "Gather" => {
                let data = self.constant(node, 0)?;
                let idx = self.constant(node, 1)?;
                let (Some(values), Some(at)) = (data.as_ints(), idx.as_ints()) else {
                    bail!("gathers from values other than a shape");
                };
                if data.dims.len() != 1 || a.int("axis", 0) != 0 {
                    bail!(
                        "gathers from a {:?} constant; convscope folds 1-D shapes only",
                        data.dims
                    );
                }
                let picked = at
                    .iter()
                    .map(|&i| {
                        let i = if i < 0 { i + values.len() as i64 } else { i };
                        values
                            .get(i as usize)
                            .copied()
                            .ok_or_else(|| anyhow!("index {i} is out of range"))
                    })
                    .collect::<Result<Vec<_>>>()?;
                Outcome::Const(Constant::ints(idx.dims.clone(), picked))
            }
            "Unsqueeze" | "Squeeze" => {
                let c = self.constant(node, 0)?.clone();
                let Some(values) = c.as_ints() else {
                    bail!("{op_type} of a weight tensor is not folded by convscope");
                };
                if c.dims.len() > 1 {
                    bail!(
                        "{op_type} of a {:?} constant is not folded by convscope",
                        c.dims
                    );
                }
                let dims = if op_type == "Unsqueeze" {
                    vec![values.len()]
                } else {
                    c.dims.clone()
                };
                Outcome::Const(Constant::ints(dims, values.to_vec()))
            }
            other => bail!("is an operation convscope does not compute ({other})"),
        })
    }

    fn activation(&self, node: &NodeProto, f: Function) -> Result<Outcome> {
        let label = match f {
            Function::Relu6 => "relu6",
            Function::Silu => "silu",
            Function::Sigmoid => "sigmoid",
            Function::Hardsigmoid => "hardsigmoid",
            Function::Hardswish => "hardswish",
            Function::Gelu => "gelu",
        };
        let (x, layout) = self.computed_any(node, 0)?;
        Ok(Outcome::Node(
            label,
            Op::Activation(Activation(f)),
            vec![x],
            layout,
        ))
    }

    fn clip(&self, node: &NodeProto, a: &Attributes) -> Result<Outcome> {
        let bound = |k: usize, attr: &str, default: f32| -> Result<f32> {
            match self.optional_constant(node, k)? {
                Some(c) => c
                    .to_floats()
                    .first()
                    .copied()
                    .ok_or_else(|| anyhow!("has an empty bound")),
                None => Ok(a.float(attr, default)),
            }
        };
        let (lo, hi) = (
            bound(1, "min", f32::NEG_INFINITY)?,
            bound(2, "max", f32::INFINITY)?,
        );
        let x = self.computed(node, 0)?;
        match (lo, hi) {
            (0.0, 6.0) => self.activation(node, Function::Relu6),
            (0.0, hi) if hi == f32::INFINITY => {
                Ok(Outcome::Node("relu", Op::Relu(Relu), vec![x], Layout::Nchw))
            }
            (lo, hi) => bail!(
                "clips to [{lo}, {hi}]; convscope computes ReLU ([0, inf]) and ReLU6 ([0, 6])"
            ),
        }
    }

    fn mul(&self, node: &NodeProto) -> Result<Outcome> {
        match (self.value(node, 0)?, self.value(node, 1)?) {
            (Value::Node(x, Layout::Nchw), Value::Node(s, Layout::Nchw))
            | (Value::Node(s, Layout::Nchw), Value::Node(x, Layout::Nchw))
                if gate_shapes(self.shape(*x), self.shape(*s)) =>
            {
                Ok(Outcome::Node("gate", Op::Gate(Gate), vec![*x, *s], Layout::Nchw))
            }
            (Value::Node(x, layout), Value::Const(c)) | (Value::Const(c), Value::Node(x, layout)) => {
                let channels = self.shape(*x).get(1).copied().unwrap_or(0);
                if c.len() != channels || c.dims.iter().filter(|&&d| d != 1).count() > 1 {
                    bail!(
                        "multiplies {:?} by a {:?} constant; convscope multiplies by one factor per channel",
                        self.shape(*x),
                        c.dims
                    );
                }
                let scale = self.tensor(c, &[1, channels, 1, 1])?;
                Ok(Outcome::Node("scale", Op::ChannelScale(ChannelScale { scale }), vec![*x], *layout))
            }
            _ => bail!("multiplies values of shapes convscope does not multiply (it computes gates, (N,C,H,W) x (N,C,1,1), and per-channel factors)"),
        }
    }

    fn conv(&self, node: &NodeProto, a: &Attributes) -> Result<Outcome> {
        let x = self.computed(node, 0)?;
        let w = self.constant(node, 1)?;
        let [co, cg, kh, kw] = w.dims[..] else {
            bail!(
                "has a {}-D kernel; convscope computes 2-D convolutions",
                w.dims.len().saturating_sub(2)
            );
        };
        let weight = self.tensor(w, &[co, cg, kh, kw])?;
        let bias = match self.optional_constant(node, 2)? {
            Some(b) if b.len() == co => Some(self.tensor(b, &[co])?),
            Some(b) => bail!("has a bias of {} values for {co} outputs", b.len()),
            None => None,
        };
        let groups = usize::try_from(a.int("group", 1))
            .map_err(|_| anyhow!("has a negative group count"))?;
        let (h, w_) = spatial(self.shape(x))?;
        let window = window(a, (kh, kw), (h, w_), true)?;
        Ok(Outcome::Node(
            "conv",
            Op::Conv2d(Conv2d {
                weight,
                bias,
                window,
                groups,
            }),
            vec![x],
            Layout::Nchw,
        ))
    }

    fn pool(&self, node: &NodeProto, a: &Attributes, max: bool) -> Result<Outcome> {
        let x = self.computed(node, 0)?;
        let kernel = a
            .ints("kernel_shape")
            .ok_or_else(|| anyhow!("has no kernel_shape"))?;
        let [kh, kw] = kernel[..] else {
            bail!(
                "pools over {} axes; convscope pools over height and width",
                kernel.len()
            );
        };
        let (kh, kw) = (positive(kh)?, positive(kw)?);
        let window = window(a, (kh, kw), spatial(self.shape(x))?, max)?;
        let padded = window.h.before + window.h.after + window.w.before + window.w.after > 0;
        if !max && padded && a.int("count_include_pad", 0) == 0 {
            bail!("averages with padding left out of the count (count_include_pad = 0); convscope counts the padding, as PyTorch's default");
        }
        let kind = if max { PoolKind::Max } else { PoolKind::Avg };
        let ceil_mode = a.int("ceil_mode", 0) != 0;
        let label = if max { "maxpool" } else { "avgpool" };
        Ok(Outcome::Node(
            label,
            Op::Pool(Pool {
                kind,
                window,
                ceil_mode,
            }),
            vec![x],
            Layout::Nchw,
        ))
    }

    fn reshape(&self, node: &NodeProto) -> Result<Outcome> {
        let x = self.computed(node, 0)?;
        let target = self.constant(node, 1)?;
        let target = target
            .as_ints()
            .ok_or_else(|| anyhow!("has a shape that is not integers"))?;
        let shape = self.shape(x);
        let features: usize = shape[1..].iter().product();
        // A reshape to (batch, features): Flatten, whatever the batch size the exporter wrote.
        let flat = matches!(target, [n, f] if (*n == -1 || *n == 0 || *n == 1)
            && (*f == -1 || *f as usize == features));
        if flat && shape.len() > 2 {
            return Ok(Outcome::Node(
                "flatten",
                Op::Flatten(Flatten),
                vec![x],
                Layout::Nchw,
            ));
        }
        let same = target.len() == shape.len()
            && target
                .iter()
                .zip(shape)
                .skip(1)
                .all(|(&t, &s)| t == -1 || t == 0 || t as usize == s);
        if same {
            return Ok(Outcome::Alias(node.input[0].clone()));
        }
        bail!("reshapes {shape:?} to {target:?}; convscope reshapes to (batch, features) only")
    }

    fn gemm(&self, node: &NodeProto, a: &Attributes) -> Result<Outcome> {
        let x = self.computed(node, 0)?;
        let b = self.constant(node, 1)?;
        let [r, c] = b.dims[..] else {
            bail!("has a {:?} weight; convscope reads a 2-D weight", b.dims);
        };
        if a.int("transA", 0) != 0 || a.float("alpha", 1.0) != 1.0 || a.float("beta", 1.0) != 1.0 {
            bail!("has transA, alpha or beta other than a Linear layer's");
        }
        let weight = self.tensor(b, &[r, c])?;
        let weight = if a.int("transB", 0) != 0 {
            weight
        } else {
            weight.t()?.contiguous()?
        };
        let out = weight.dims()[0];
        let bias = match self.optional_constant(node, 2)? {
            Some(bc) if bc.len() == out => Some(self.tensor(bc, &[out])?),
            Some(bc) => bail!("has a bias of {} values for {out} outputs", bc.len()),
            None => None,
        };
        Ok(Outcome::Node(
            "linear",
            Op::Linear(Linear { weight, bias }),
            vec![x],
            Layout::Nchw,
        ))
    }

    /// `Add` of two computed values of one shape (residuals), or of a bias to the matrix
    /// product just before it (a `Linear` exported as `MatMul` + `Add`), folded into it.
    fn add(&mut self, node: &NodeProto) -> Result<Outcome> {
        match (self.value(node, 0)?, self.value(node, 1)?) {
            (Value::Node(x, lx), Value::Node(y, ly)) => {
                if self.shape(*x) != self.shape(*y) || lx != ly {
                    bail!(
                        "adds shapes {:?} and {:?}; convscope adds equal shapes only",
                        self.shape(*x),
                        self.shape(*y)
                    );
                }
                Ok(Outcome::Node("add", Op::Add(Add), vec![*x, *y], *lx))
            }
            (Value::Node(x, layout), Value::Const(c))
            | (Value::Const(c), Value::Node(x, layout)) => {
                let (x, layout, c) = (*x, *layout, c.clone());
                let read_once = node.input.iter().any(|i| {
                    matches!(self.values.get(i), Some(Value::Node(..)))
                        && self.uses.get(i) == Some(&1)
                });
                let last = x == self.pending.len() && read_once;
                let bias_len = match self.pending.last().map(|p| &p.op) {
                    Some(Op::Conv2d(conv)) if last && conv.bias.is_none() => conv.weight.dims()[0],
                    Some(Op::Linear(lin)) if last && lin.bias.is_none() => lin.weight.dims()[0],
                    _ => bail!("adds a constant to a value that is not a bias-free matrix product just before it; convscope adds biases only there"),
                };
                if c.len() != bias_len {
                    bail!("adds {} values as the bias of {bias_len} outputs", c.len());
                }
                let bias = Some(self.tensor(&c, &[bias_len])?);
                match &mut self.pending.last_mut().expect("checked above").op {
                    Op::Conv2d(conv) => conv.bias = bias,
                    Op::Linear(lin) => lin.bias = bias,
                    other => bail!("cannot take a bias ({})", other.kind()),
                }
                Ok(Outcome::Relayout(x, layout))
            }
            (Value::Const(_), Value::Const(_)) => {
                bail!("adds two constants, which convscope does not fold")
            }
        }
    }

    /// `MatMul` by a constant `(in, out)` matrix: a `Linear` on `(N, features)`, or a 1x1
    /// convolution on a channels-last value (ConvNeXt's pointwise layers).
    fn matmul(&self, node: &NodeProto) -> Result<Outcome> {
        let (x, layout) = self.computed_any(node, 0)?;
        let b = self.constant(node, 1)?;
        let [k, n] = b.dims[..] else {
            bail!(
                "multiplies by a {:?} constant; convscope reads a 2-D weight",
                b.dims
            );
        };
        let weight = self.tensor(b, &[k, n])?.t()?.contiguous()?;
        match (layout, self.shape(x).len()) {
            (Layout::Nhwc, 4) => {
                let conv = Conv2d {
                    weight: weight.reshape((n, k, 1, 1))?,
                    bias: None,
                    window: Window::square(1, 1, 0, 1),
                    groups: 1,
                };
                Ok(Outcome::Node(
                    "linear",
                    Op::Conv2d(conv),
                    vec![x],
                    Layout::Nhwc,
                ))
            }
            (Layout::Nchw, 2) => Ok(Outcome::Node(
                "linear",
                Op::Linear(Linear { weight, bias: None }),
                vec![x],
                Layout::Nchw,
            )),
            (_, rank) => bail!(
                "multiplies a rank-{rank} value along an axis convscope does not map to channels"
            ),
        }
    }

    fn all_constant(&self, node: &NodeProto) -> bool {
        node.input
            .iter()
            .all(|i| matches!(self.values.get(i), Some(Value::Const(_))))
    }

    /// Integer arithmetic on shapes (`chunk`'s sizes: `Shape → Gather → Add → Div → Mul`),
    /// folded; a scalar broadcasts.
    fn arithmetic(&self, node: &NodeProto, op_type: &str) -> Result<Outcome> {
        let (a, b) = (self.constant(node, 0)?, self.constant(node, 1)?);
        let (Some(x), Some(y)) = (a.as_ints(), b.as_ints()) else {
            bail!("computes with float constants, which convscope does not fold");
        };
        let (dims, n) = if x.len() >= y.len() {
            (&a.dims, x.len())
        } else {
            (&b.dims, y.len())
        };
        if !(x.len() == y.len() || x.len() == 1 || y.len() == 1) {
            bail!("combines {} and {} values", x.len(), y.len());
        }
        let at = |v: &[i64], i: usize| if v.len() == 1 { v[0] } else { v[i] };
        let values = (0..n)
            .map(|i| {
                let (p, q) = (at(x, i), at(y, i));
                match op_type {
                    "Add" => Ok(p + q),
                    "Sub" => Ok(p - q),
                    "Mul" => Ok(p * q),
                    _ if q == 0 => bail!("divides by zero"),
                    _ => Ok(p / q),
                }
            })
            .collect::<Result<Vec<i64>>>()?;
        Ok(Outcome::Const(Constant::ints(dims.clone(), values)))
    }

    /// `Slice` along the channels with step 1 (`chunk`), or of a constant shape.
    fn slice(&self, node: &NodeProto) -> Result<Outcome> {
        let ints = |k: usize| -> Result<Option<Vec<i64>>> {
            match self.optional_constant(node, k)? {
                Some(c) => Ok(Some(
                    c.as_ints()
                        .ok_or_else(|| anyhow!("has input {k} that is not integers"))?
                        .to_vec(),
                )),
                None => Ok(None),
            }
        };
        let starts = ints(1)?.ok_or_else(|| anyhow!("has no starts"))?;
        let ends = ints(2)?.ok_or_else(|| anyhow!("has no ends"))?;
        let axes = ints(3)?.unwrap_or_else(|| (0..starts.len() as i64).collect());
        let steps = ints(4)?.unwrap_or_else(|| vec![1; starts.len()]);
        let ([start], [end], [axis], [1]) = (&starts[..], &ends[..], &axes[..], &steps[..]) else {
            bail!("slices {axes:?} with steps {steps:?}; convscope slices one axis with step 1");
        };
        // Python-style bounds, clamped to the axis.
        let bound = |v: i64, len: usize| -> usize {
            let v = if v < 0 { v + len as i64 } else { v };
            v.clamp(0, len as i64) as usize
        };
        match self.value(node, 0)? {
            Value::Const(c) => {
                let values = c
                    .as_ints()
                    .filter(|_| c.dims.len() == 1 && *axis == 0)
                    .ok_or_else(|| anyhow!("slices a constant other than a shape"))?;
                let (s, e) = (bound(*start, values.len()), bound(*end, values.len()));
                let picked = values[s..e.max(s)].to_vec();
                Ok(Outcome::Const(Constant::ints(vec![picked.len()], picked)))
            }
            Value::Node(..) => {
                let x = self.computed(node, 0)?;
                let shape = self.shape(x);
                if !(*axis == 1 || *axis == 1 - shape.len() as i64) {
                    bail!("slices axis {axis}; convscope slices channels");
                }
                let (s, e) = (bound(*start, shape[1]), bound(*end, shape[1]));
                if e <= s {
                    bail!("slices no channels ({start}..{end})");
                }
                let op = Op::ChannelSlice(ChannelSlice {
                    start: s,
                    len: e - s,
                });
                Ok(Outcome::Node("chunk", op, vec![x], Layout::Nchw))
            }
        }
    }

    /// `Split` along the channels: one channel slice per output, sizes from the `split` input
    /// (opset 13+) or attribute, else equal parts.
    fn split(&mut self, node: &NodeProto) -> Result<()> {
        let a = Attributes::of(node);
        let x = self.computed(node, 0)?;
        let channels = self.shape(x)[1];
        let axis = a.int("axis", 0);
        if !(axis == 1 || axis == 1 - self.shape(x).len() as i64) {
            bail!("splits axis {axis}; convscope splits channels");
        }
        let parts = node.output.len();
        let sizes: Vec<i64> = match self.optional_constant(node, 1)? {
            Some(c) => c
                .as_ints()
                .ok_or_else(|| anyhow!("has split sizes that are not integers"))?
                .to_vec(),
            None => match a.ints("split") {
                Some(v) => v.to_vec(),
                None if parts > 0 && channels.is_multiple_of(parts) => {
                    vec![(channels / parts) as i64; parts]
                }
                None => bail!("splits {channels} channels into {parts} unequal parts"),
            },
        };
        if sizes.len() != parts
            || sizes.iter().sum::<i64>() != channels as i64
            || sizes.iter().any(|&s| s <= 0)
        {
            bail!("splits {channels} channels as {sizes:?} into {parts} outputs");
        }
        let mut start = 0;
        for (out, &len) in node.output.iter().zip(&sizes) {
            let len = len as usize;
            let op = Op::ChannelSlice(ChannelSlice { start, len });
            let id = self.push(node, "chunk", op, vec![x])?;
            self.values
                .insert(out.clone(), Value::Node(id, Layout::Nchw));
            start += len;
        }
        Ok(())
    }

    fn concat_constants(&self, node: &NodeProto, a: &Attributes) -> Result<Outcome> {
        if a.int("axis", 0) != 0 {
            bail!("concatenates constants along axis {}", a.int("axis", 0));
        }
        let mut values = Vec::new();
        for k in 0..node.input.len() {
            let c = self.constant(node, k)?;
            let v = c
                .as_ints()
                .ok_or_else(|| anyhow!("concatenates weights; convscope folds shapes only"))?;
            values.extend_from_slice(v);
        }
        Ok(Outcome::Const(Constant::ints(vec![values.len()], values)))
    }
}

/// `(height, width)` of an NCHW shape.
fn spatial(shape: &[usize]) -> Result<(usize, usize)> {
    match shape {
        [_, _, h, w] => Ok((*h, *w)),
        other => bail!("reads a {other:?} value where an (N, C, H, W) image was expected"),
    }
}

fn gate_shapes(x: &[usize], s: &[usize]) -> bool {
    matches!((x, s), ([n, c, _, _], [sn, sc, 1, 1]) if (n, c) == (sn, sc)) && x != s
}

fn positive(v: i64) -> Result<usize> {
    usize::try_from(v)
        .ok()
        .filter(|&v| v > 0)
        .ok_or_else(|| anyhow!("has a size {v} that is not positive"))
}

/// The window of a convolution or pooling node: strides, dilations and padding per axis, with
/// `auto_pad` resolved against the input size.
fn window(
    a: &Attributes,
    (kh, kw): (usize, usize),
    (h, w): (usize, usize),
    dilated: bool,
) -> Result<Window> {
    let pair = |name: &str| -> Result<(usize, usize)> {
        match a.ints(name) {
            None => Ok((1, 1)),
            Some([y, x]) => Ok((positive(*y)?, positive(*x)?)),
            Some(other) => bail!("has {name} {other:?}; convscope reads two spatial axes"),
        }
    };
    let (sh, sw) = pair("strides")?;
    let (dh, dw) = pair("dilations")?;
    if !dilated && (dh, dw) != (1, 1) {
        bail!("has dilations {dh}x{dw}; convscope pools without dilation");
    }
    let auto_pad = a.text("auto_pad").unwrap_or_else(|| "NOTSET".into());
    let axis = |kernel, stride, dilation, before, after| Axis {
        kernel,
        stride,
        dilation,
        before,
        after,
    };
    let same = |size: usize, k: usize, s: usize, d: usize, upper: bool| {
        let span = d * (k - 1) + 1;
        let total = ((size.div_ceil(s) - 1) * s + span).saturating_sub(size);
        let small = total / 2;
        if upper {
            (small, total - small)
        } else {
            (total - small, small)
        }
    };
    let (ph, pw) = match auto_pad.as_str() {
        "NOTSET" => match a.ints("pads") {
            None => ((0, 0), (0, 0)),
            Some(&[t, l, b, r]) => {
                let p =
                    |v: i64| usize::try_from(v).map_err(|_| anyhow!("has negative padding {v}"));
                ((p(t)?, p(b)?), (p(l)?, p(r)?))
            }
            Some(other) => bail!("has pads {other:?}; convscope reads two spatial axes"),
        },
        "VALID" => ((0, 0), (0, 0)),
        "SAME_UPPER" | "SAME_LOWER" => {
            let upper = auto_pad == "SAME_UPPER";
            (same(h, kh, sh, dh, upper), same(w, kw, sw, dw, upper))
        }
        other => bail!("has auto_pad '{other}'"),
    };
    if a.has("pads") && auto_pad != "NOTSET" {
        bail!("has both pads and auto_pad '{auto_pad}'");
    }
    Ok(Window {
        h: axis(kh, sh, dh, ph.0, ph.1),
        w: axis(kw, sw, dw, pw.0, pw.1),
    })
}
