//! The sum of all inputs (residual connections).

use candle_core::{Result, Tensor};

use super::{first, Backward, Operation, Reads};
use crate::model::cpu;

#[derive(Debug, Clone)]
pub struct Add;

impl Operation for Add {
    fn kind(&self) -> &'static str {
        "add"
    }

    fn attributes(&self) -> String {
        String::new()
    }

    fn parameter_count(&self) -> usize {
        0
    }

    fn output_shape(&self, inputs: &[&[usize]]) -> std::result::Result<Vec<usize>, String> {
        let shape = first("add", inputs)?;
        if inputs.iter().any(|s| *s != shape) {
            return Err(format!("add needs equal shapes, got {inputs:?}"));
        }
        Ok(shape.to_vec())
    }

    fn forward(&self, inputs: &[&Tensor]) -> Result<Tensor> {
        let mut acc = inputs[0].clone();
        for t in &inputs[1..] {
            acc = if cpu::handles(&acc) && cpu::handles(t) {
                cpu::elementwise::add(&acc, t)?
            } else {
                (acc + *t)?
            };
        }
        Ok(acc)
    }

    fn reverse_reads(&self) -> Reads {
        Reads::NOTHING
    }

    fn vjp(&self, at: &Backward, grad: &Tensor) -> Result<Vec<Tensor>> {
        Ok(vec![grad.clone(); at.input_shapes.len()])
    }
}
