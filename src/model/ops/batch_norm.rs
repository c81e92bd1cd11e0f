//! Eval-mode batch norm, folded at load into `x * scale + shift` per channel.

use candle_core::{Result, Tensor};

use super::{spatial, Backward, Operation, Reads};
use crate::model::cpu;

#[derive(Debug, Clone)]
pub struct BatchNorm {
    /// `(1, C, 1, 1)`.
    pub scale: Tensor,
    /// `(1, C, 1, 1)`.
    pub shift: Tensor,
}

impl Operation for BatchNorm {
    fn kind(&self) -> &'static str {
        "batchnorm"
    }

    fn attributes(&self) -> String {
        String::new()
    }

    /// Weight and bias; the running statistics are buffers.
    fn parameter_count(&self) -> usize {
        2 * self.scale.elem_count()
    }

    fn output_shape(&self, inputs: &[&[usize]]) -> std::result::Result<Vec<usize>, String> {
        let (n, c, h, w) = spatial("batchnorm", inputs)?;
        let expected = self.scale.dims()[1];
        if expected != c {
            return Err(format!("batchnorm expects {expected} channels, got {c}"));
        }
        Ok(vec![n, c, h, w])
    }

    fn forward(&self, inputs: &[&Tensor]) -> Result<Tensor> {
        let x = inputs[0];
        if cpu::handles(x) && x.rank() == 4 {
            cpu::planes::affine(x, &self.scale, Some(&self.shift))
        } else {
            x.broadcast_mul(&self.scale)?.broadcast_add(&self.shift)
        }
    }

    fn reverse_reads(&self) -> Reads {
        Reads::NOTHING
    }

    fn vjp(&self, _: &Backward, grad: &Tensor) -> Result<Vec<Tensor>> {
        Ok(vec![if cpu::handles(grad) && grad.rank() == 4 {
            cpu::planes::affine(grad, &self.scale, None)?
        } else {
            grad.broadcast_mul(&self.scale)?
        }])
    }
}
