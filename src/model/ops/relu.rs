//! ReLU, with the engine's one-pass CPU kernels.

use candle_core::{Result, Tensor};

use super::{first, Backward, Operation, Reads};
use crate::model::cpu;

#[derive(Debug, Clone)]
pub struct Relu;

impl Operation for Relu {
    fn kind(&self) -> &'static str {
        "relu"
    }

    fn attributes(&self) -> String {
        String::new()
    }

    fn parameter_count(&self) -> usize {
        0
    }

    fn output_shape(&self, inputs: &[&[usize]]) -> std::result::Result<Vec<usize>, String> {
        Ok(first("relu", inputs)?.to_vec())
    }

    fn forward(&self, inputs: &[&Tensor]) -> Result<Tensor> {
        let x = inputs[0];
        if cpu::handles(x) {
            cpu::elementwise::relu(x)
        } else {
            x.relu()
        }
    }

    fn reverse_reads(&self) -> Reads {
        Reads::OUTPUT
    }

    fn vjp(&self, at: &Backward, grad: &Tensor) -> Result<Vec<Tensor>> {
        let y = at.output()?;
        Ok(vec![if cpu::handles(grad) {
            cpu::elementwise::relu_backward(y, grad)?
        } else {
            (grad * y.gt(0f64)?.to_dtype(grad.dtype())?)?
        }])
    }
}
