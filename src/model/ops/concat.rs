//! Concatenation of all inputs along channels.

use candle_core::{Result, Tensor};

use super::{first, Backward, Operation, Reads};

#[derive(Debug, Clone)]
pub struct Concat;

impl Operation for Concat {
    fn kind(&self) -> &'static str {
        "concat"
    }

    fn attributes(&self) -> String {
        String::new()
    }

    fn parameter_count(&self) -> usize {
        0
    }

    fn output_shape(&self, inputs: &[&[usize]]) -> std::result::Result<Vec<usize>, String> {
        let mut out = first("concat", inputs)?.to_vec();
        for s in &inputs[1..] {
            if out.len() < 2 || s.len() != out.len() || s[0] != out[0] || s[2..] != out[2..] {
                return Err(format!("concat needs matching shapes, got {inputs:?}"));
            }
            out[1] += s[1];
        }
        Ok(out)
    }

    fn forward(&self, inputs: &[&Tensor]) -> Result<Tensor> {
        Tensor::cat(inputs, 1)
    }

    fn reverse_reads(&self) -> Reads {
        Reads::NOTHING
    }

    fn vjp(&self, at: &Backward, grad: &Tensor) -> Result<Vec<Tensor>> {
        let mut out = Vec::with_capacity(at.input_shapes.len());
        let mut start = 0;
        for shape in &at.input_shapes {
            out.push(grad.narrow(1, start, shape[1])?);
            start += shape[1];
        }
        Ok(out)
    }
}
