//! Functions that exporters write as several elementary nodes, found before the walk so that
//! each becomes one op of the engine's (with its own exact reverse pass):
//!
//! - SiLU, `x * Sigmoid(x)` (torch.onnx.export of `nn.SiLU`), and HardSwish,
//!   `x * HardSigmoid(x)` (before opset 14's `HardSwish`);
//! - the exact GELU, `x * 0.5 * (1 + Erf(x / sqrt(2)))`, its two products in either order
//!   (`nn.GELU` before opset 20's `Gelu`);
//! - the channel shuffle, `Reshape (N, g, C/g, H, W) → Transpose (0, 2, 1, 3, 4) → Reshape
//!   (N, C, H, W)` (ShuffleNetV2's `channel_shuffle`);
//! - a layer norm's arithmetic (`ReduceMean`, `Sub`, `Pow`, `ReduceMean`, `Add`, `Sqrt`,
//!   `Div`), as exporters write `LayerNorm` before opset 17.
//!
//! A pattern is taken only when its inner values are used by nothing else.

use std::collections::{HashMap, HashSet};

use super::attributes::Attributes;
use super::proto::{GraphProto, NodeProto};
use super::tensors::Constant;

/// The nodes a pattern replaces: the output of its last node (which becomes the function of
/// its input) and the outputs of the nodes folded into it.
#[derive(Debug, Default)]
pub struct Fusions {
    /// Last node's output → (function, the input it is applied to).
    pub functions: HashMap<String, (Fused, String)>,
    /// Outputs of the nodes computed inside a fused function.
    pub absorbed: HashSet<String>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Fused {
    Silu,
    /// `x * HardSigmoid(x)`: HardSwish before opset 14.
    Hardswish,
    Gelu,
    /// A channel shuffle in this many groups.
    Shuffle(usize),
    /// A layer norm over one axis with this epsilon, as exporters write it before opset 17's
    /// `LayerNormalization`: `(x - mean) / sqrt(mean((x - mean)^2) + eps)`.
    LayerNorm {
        axis: i64,
        eps: f32,
    },
}

/// Finds the patterns of `graph`; `constant` gives a constant's values by name (initializers
/// and `Constant` nodes).
pub fn find(graph: &GraphProto, constant: &dyn Fn(&str) -> Option<Constant>) -> Fusions {
    let scalar = |name: &str| {
        constant(name)
            .filter(|c| c.len() == 1)
            .map(|c| c.to_floats()[0])
    };
    let ints = |name: &str| constant(name).and_then(|c| c.as_ints().map(<[i64]>::to_vec));
    let mut uses: HashMap<&str, usize> = HashMap::new();
    for n in &graph.node {
        for i in &n.input {
            *uses.entry(i.as_str()).or_default() += 1;
        }
    }
    let producer: HashMap<&str, &NodeProto> = graph
        .node
        .iter()
        .filter_map(|n| Some((n.output.first()?.as_str(), n)))
        .collect();
    let users = |value: &str| -> Vec<&NodeProto> {
        graph
            .node
            .iter()
            .filter(|n| n.input.iter().any(|i| i == value))
            .collect()
    };
    let once = |value: &str| uses.get(value) == Some(&1);
    let op = |n: &NodeProto| n.op_type.as_deref().unwrap_or("").to_string();
    let out = |n: &NodeProto| n.output.first().cloned().unwrap_or_default();
    let near = |name: &str, v: f32| scalar(name).is_some_and(|s| (s - v).abs() < 1e-4);
    // The operand of a two-input node other than `known`.
    let other = |n: &NodeProto, known: &str| -> Option<String> {
        match &n.input[..] {
            [a, b] if a == known => Some(b.clone()),
            [a, b] if b == known => Some(a.clone()),
            _ => None,
        }
    };
    let mut fusions = Fusions::default();
    for n in &graph.node {
        match op(n).as_str() {
            "Sigmoid" | "HardSigmoid" if n.input.len() == 1 => {
                let (x, s) = (n.input[0].clone(), out(n));
                let a = Attributes::of(n);
                let function = match op(n).as_str() {
                    "Sigmoid" => Fused::Silu,
                    // PyTorch's constants only; any other HardSigmoid is refused on its own.
                    _ if (a.float("alpha", 0.2) - 1.0 / 6.0).abs() < 1e-6
                        && (a.float("beta", 0.5) - 0.5).abs() < 1e-6 =>
                    {
                        Fused::Hardswish
                    }
                    _ => continue,
                };
                if !once(&s) {
                    continue;
                }
                let [mul] = users(&s)[..] else { continue };
                if op(mul) == "Mul" && other(mul, &s).as_deref() == Some(x.as_str()) {
                    fusions.absorbed.insert(s);
                    fusions.functions.insert(out(mul), (function, x));
                }
            }
            "Erf" if n.input.len() == 1 => {
                let Some(scaled) = producer.get(n.input[0].as_str()) else {
                    continue;
                };
                let x = match (op(scaled).as_str(), &scaled.input[..]) {
                    ("Div", [x, c]) if near(c, std::f32::consts::SQRT_2) => x.clone(),
                    ("Mul", [a, b]) if near(b, std::f32::consts::FRAC_1_SQRT_2) => a.clone(),
                    ("Mul", [a, b]) if near(a, std::f32::consts::FRAC_1_SQRT_2) => b.clone(),
                    _ => continue,
                };
                let erf = out(n);
                if !once(&n.input[0]) || !once(&erf) {
                    continue;
                }
                let [plus] = users(&erf)[..] else { continue };
                if op(plus) != "Add" || !other(plus, &erf).is_some_and(|c| near(&c, 1.0)) {
                    continue;
                }
                let sum = out(plus);
                let [first] = users(&sum)[..] else { continue };
                let Some(first_other) = other(first, &sum).filter(|_| op(first) == "Mul") else {
                    continue;
                };
                let product = out(first);
                let [second] = users(&product)[..] else {
                    continue;
                };
                let Some(second_other) = other(second, &product).filter(|_| op(second) == "Mul")
                else {
                    continue;
                };
                // x * ((1 + erf) * 0.5), or 0.5 * (x * (1 + erf)), in any operand order.
                let halves = (first_other == x && near(&second_other, 0.5))
                    || (second_other == x && near(&first_other, 0.5));
                if halves && once(&sum) && once(&product) {
                    fusions.absorbed.extend([out(scaled), erf, sum, product]);
                    fusions.functions.insert(out(second), (Fused::Gelu, x));
                }
            }
            "Div" if n.input.len() == 2 => {
                // Div(d, Sqrt(Add(ReduceMean(Pow(d, 2)), eps))), d = Sub(x, ReduceMean(x)).
                let made = |v: &str, kind: &str| {
                    producer
                        .get(v)
                        .copied()
                        .filter(|p| op(p) == kind && once(v))
                };
                let axis_of = |p: &NodeProto| match Attributes::of(p).ints("axes") {
                    Some(&[a]) if Attributes::of(p).int("keepdims", 1) == 1 => Some(a),
                    _ => None,
                };
                let (d, root) = (n.input[0].as_str(), n.input[1].as_str());
                let Some(sub) = producer.get(d).copied().filter(|p| op(p) == "Sub") else {
                    continue;
                };
                let Some(sqrt) = made(root, "Sqrt") else {
                    continue;
                };
                let Some(plus) = sqrt.input.first().and_then(|v| made(v, "Add")) else {
                    continue;
                };
                let [var, eps] = &plus.input[..] else {
                    continue;
                };
                let Some(eps) = scalar(eps) else { continue };
                let Some(mean_sq) = made(var, "ReduceMean") else {
                    continue;
                };
                let Some(pow) = mean_sq.input.first().and_then(|v| made(v, "Pow")) else {
                    continue;
                };
                let ([x, m], [base, two]) = (&sub.input[..], &pow.input[..]) else {
                    continue;
                };
                let Some(mean) = made(m, "ReduceMean") else {
                    continue;
                };
                let (Some(a1), Some(a2)) = (axis_of(mean), axis_of(mean_sq)) else {
                    continue;
                };
                let uses_d = uses.get(d) == Some(&2);
                if base == d
                    && near(two, 2.0)
                    && mean.input.first() == Some(x)
                    && a1 == a2
                    && uses_d
                {
                    fusions.absorbed.extend([
                        out(mean),
                        d.to_string(),
                        out(pow),
                        out(mean_sq),
                        out(plus),
                        out(sqrt),
                    ]);
                    fusions
                        .functions
                        .insert(out(n), (Fused::LayerNorm { axis: a1, eps }, x.clone()));
                }
            }
            "Transpose" if Attributes::of(n).ints("perm") == Some(&[0, 2, 1, 3, 4]) => {
                let Some(split) = n.input.first().and_then(|i| producer.get(i.as_str())) else {
                    continue;
                };
                let Some(x) = split.input.first() else {
                    continue;
                };
                let transposed = out(n);
                let [merge] = users(&transposed)[..] else {
                    continue;
                };
                if op(split) != "Reshape" || op(merge) != "Reshape" {
                    continue;
                }
                let (Some(five), Some(four)) = (
                    split.input.get(1).and_then(|s| ints(s)),
                    merge.input.get(1).and_then(|s| ints(s)),
                ) else {
                    continue;
                };
                // (N, g, C/g, H, W) back to (N, C, H, W).
                let grouped = matches!((&five[..], &four[..]),
                    ([_, g, cg, h, w], [_, c, h2, w2])
                        if g.checked_mul(*cg) == Some(*c) && (h, w) == (h2, w2) && *g > 0);
                if grouped && once(&n.input[0]) && once(&transposed) && !x.is_empty() {
                    fusions.absorbed.extend([out(split), transposed]);
                    let groups = five[1] as usize;
                    fusions
                        .functions
                        .insert(out(merge), (Fused::Shuffle(groups), x.clone()));
                }
            }
            _ => {}
        }
    }
    fusions
}
