//! A change of memory layout in PyTorch (ConvNeXt's `Permute([0, 2, 3, 1])` to channels-last
//! and back). The engine keeps NCHW throughout, so it is the identity here; it stays a node so
//! that the module path exists and shows the same values.

use candle_core::{Result, Tensor};

use super::{first, Backward, Operation, Reads};

#[derive(Debug, Clone)]
pub struct Permute;

impl Operation for Permute {
    fn kind(&self) -> &'static str {
        "permute"
    }

    fn attributes(&self) -> String {
        "layout only (NCHW kept)".into()
    }

    fn parameter_count(&self) -> usize {
        0
    }

    fn output_shape(&self, inputs: &[&[usize]]) -> std::result::Result<Vec<usize>, String> {
        Ok(first("permute", inputs)?.to_vec())
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
