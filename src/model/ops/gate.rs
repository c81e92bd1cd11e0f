//! The squeeze-and-excitation gate: a `(N, C, H, W)` input times a `(N, C, 1, 1)` weight per
//! channel computed from it (MobileNetV3, EfficientNet, RegNetY).

use candle_core::{Result, Tensor};

use super::{Backward, Operation, Reads};
use crate::model::cpu;

#[derive(Debug, Clone)]
pub struct Gate;

impl Operation for Gate {
    fn kind(&self) -> &'static str {
        "gate"
    }

    fn attributes(&self) -> String {
        String::new()
    }

    fn parameter_count(&self) -> usize {
        0
    }

    fn output_shape(&self, inputs: &[&[usize]]) -> std::result::Result<Vec<usize>, String> {
        match inputs {
            [[n, c, h, w], [gn, gc, 1, 1]] if (n, c) == (gn, gc) => Ok(vec![*n, *c, *h, *w]),
            other => Err(format!(
                "gate needs an (N, C, H, W) input and an (N, C, 1, 1) weight, got {other:?}"
            )),
        }
    }

    fn forward(&self, inputs: &[&Tensor]) -> Result<Tensor> {
        gated(inputs[0], inputs[1])
    }

    /// The input's gradient is gated the same way; the gate's is summed over H and W.
    fn reverse_reads(&self) -> Reads {
        Reads::INPUTS
    }

    fn vjp(&self, at: &Backward, grad: &Tensor) -> Result<Vec<Tensor>> {
        let (x, s) = (at.input(0)?, at.input(1)?);
        let gate_grad = if cpu::handles(grad) && cpu::handles(x) {
            cpu::planes::dots(grad, x)?
        } else {
            (grad * x)?.sum_keepdim(2)?.sum_keepdim(3)?
        };
        Ok(vec![gated(grad, s)?, gate_grad])
    }
}

/// `x * s` with one factor of `s` (`(N, C, 1, 1)`) per plane of `x`.
fn gated(x: &Tensor, s: &Tensor) -> Result<Tensor> {
    if cpu::handles(x) && cpu::handles(s) && x.rank() == 4 {
        cpu::planes::affine(x, s, None)
    } else {
        x.broadcast_mul(s)
    }
}
