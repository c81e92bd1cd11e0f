//! `(N, C, H, W) -> (N, C*H*W)`.

use candle_core::{Result, Tensor};

use super::{first, Backward, Operation, Reads};

#[derive(Debug, Clone)]
pub struct Flatten;

impl Operation for Flatten {
    fn kind(&self) -> &'static str {
        "flatten"
    }

    fn attributes(&self) -> String {
        String::new()
    }

    fn parameter_count(&self) -> usize {
        0
    }

    fn output_shape(&self, inputs: &[&[usize]]) -> std::result::Result<Vec<usize>, String> {
        match first("flatten", inputs)? {
            [n, rest @ ..] => Ok(vec![*n, rest.iter().product()]),
            [] => Err("flatten needs a batch dimension".into()),
        }
    }

    fn forward(&self, inputs: &[&Tensor]) -> Result<Tensor> {
        inputs[0].flatten_from(1)
    }

    fn reverse_reads(&self) -> Reads {
        Reads::NOTHING
    }

    fn vjp(&self, at: &Backward, grad: &Tensor) -> Result<Vec<Tensor>> {
        Ok(vec![grad.reshape(at.input_shapes[0].as_slice())?])
    }
}
