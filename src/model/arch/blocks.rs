//! Building blocks torchvision's families share (`torchvision.ops.misc`): conv + norm +
//! activation (`Conv2dNormActivation`) and squeeze-and-excitation (`SqueezeExcitation`), with
//! torchvision's module paths inside them; and timm's `ConvNormAct`.

use anyhow::Result;

use super::builder::{Builder, ConvSpec};
use crate::model::graph::NodeId;
use crate::model::ops::{Function, Gate, Op};

/// The activation after a conv + norm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Act {
    Relu,
    Func(Function),
}

fn activate(b: &mut Builder, name: &str, x: NodeId, act: Act) -> Result<NodeId> {
    match act {
        Act::Relu => b.relu(name, x),
        Act::Func(f) => b.activation(name, x, f),
    }
}

/// `Conv2dNormActivation`: conv without bias `{name}.0`, batch norm `{name}.1` and, when given,
/// the activation `{name}.2`.
pub fn conv_norm_act(
    b: &mut Builder,
    name: &str,
    x: NodeId,
    spec: ConvSpec,
    eps: f64,
    act: Option<Act>,
) -> Result<NodeId> {
    let y = b.conv(&format!("{name}.0"), x, spec)?;
    let y = b.batch_norm(&format!("{name}.1"), y, eps)?;
    match act {
        Some(act) => activate(b, &format!("{name}.2"), y, act),
        None => Ok(y),
    }
}

/// timm's `ConvNormAct`: conv without bias `{name}.conv` and `BatchNormAct2d` `{name}.bn` (see
/// [`timm_norm_act`]).
pub fn timm_conv_norm_act(
    b: &mut Builder,
    name: &str,
    x: NodeId,
    spec: ConvSpec,
    act: Option<Act>,
) -> Result<NodeId> {
    let y = b.conv(&format!("{name}.conv"), x, spec)?;
    timm_norm_act(b, &format!("{name}.bn"), y, act)
}

/// timm's `BatchNormAct2d` `name`: a batch norm and, when given, its activation `{name}.act`.
/// The module's output is the activation's, so with one the norm's own node is `{name}.norm`
/// and `name` stands for `{name}.act`, as a hook on the module sees it.
pub fn timm_norm_act(b: &mut Builder, name: &str, x: NodeId, act: Option<Act>) -> Result<NodeId> {
    match act {
        Some(act) => {
            let y = b.batch_norm_as(&format!("{name}.norm"), name, x, 1e-5)?;
            activate(b, &format!("{name}.act"), y, act)
        }
        None => b.batch_norm(name, x, 1e-5),
    }
}

/// Conv (no bias) `{prefix}.{at}` and batch norm `{prefix}.{at + 1}` in a flat `Sequential`,
/// with a ReLU `{prefix}.{at + 2}` when `relu` (MNASNet's and ShuffleNetV2's layouts).
pub fn conv_bn_at(
    b: &mut Builder,
    prefix: &str,
    at: usize,
    x: NodeId,
    spec: ConvSpec,
    relu: bool,
) -> Result<NodeId> {
    let y = b.conv(&format!("{prefix}.{at}"), x, spec)?;
    let y = b.batch_norm(&format!("{prefix}.{}", at + 1), y, 1e-5)?;
    if relu {
        b.relu(&format!("{prefix}.{}", at + 2), y)
    } else {
        Ok(y)
    }
}

/// `SqueezeExcitation`: `avgpool`, `fc1` to `squeeze` channels, `activation`, `fc2` back,
/// `scale_activation`, and the gate multiplying the input (`{name}.mul`, a functional step).
pub fn squeeze_excitation(
    b: &mut Builder,
    name: &str,
    x: NodeId,
    squeeze: usize,
    activation: Act,
    scale: Function,
) -> Result<NodeId> {
    let p = |s: &str| format!("{name}.{s}");
    let channels = b.shape(x)[1];
    let s = b.global_avg_pool(&p("avgpool"), x)?;
    let s = b.conv(&p("fc1"), s, ConvSpec::new(squeeze, 1, 0, true))?;
    let s = activate(b, &p("activation"), s, activation)?;
    let s = b.conv(&p("fc2"), s, ConvSpec::new(channels, 1, 0, true))?;
    let s = b.activation(&p("scale_activation"), s, scale)?;
    b.op(&p("mul"), Op::Gate(Gate), &[x, s])
}

/// torchvision's `_make_divisible(v, 8)`: the nearest multiple of 8, at least 8, and never
/// more than 10% below `v`.
pub fn make_divisible(v: f64) -> usize {
    let rounded = ((v + 4.0) as usize / 8 * 8).max(8);
    if (rounded as f64) < 0.9 * v {
        rounded + 8
    } else {
        rounded
    }
}
