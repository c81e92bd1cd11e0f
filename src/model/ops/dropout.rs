//! Dropout (and anything else that is the identity at inference).

use candle_core::{Result, Tensor};

use super::{first, Backward, Operation, Reads};

#[derive(Debug, Clone)]
pub struct Dropout;

impl Operation for Dropout {
    fn kind(&self) -> &'static str {
        "dropout"
    }

    fn attributes(&self) -> String {
        String::new()
    }

    fn parameter_count(&self) -> usize {
        0
    }

    fn output_shape(&self, inputs: &[&[usize]]) -> std::result::Result<Vec<usize>, String> {
        Ok(first("dropout", inputs)?.to_vec())
    }

    fn forward(&self, inputs: &[&Tensor]) -> Result<Tensor> {
        Ok(inputs[0].clone())
    }

    fn reverse_reads(&self) -> Reads {
        Reads::NOTHING
    }

    fn vjp(&self, _: &Backward, grad: &Tensor) -> Result<Vec<Tensor>> {
        Ok(vec![grad.clone()])
    }
}
