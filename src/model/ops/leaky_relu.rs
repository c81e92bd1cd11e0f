//! Leaky ReLU, `x` where `x > 0` and `negative_slope * x` elsewhere (PyTorch's `LeakyReLU`,
//! ONNX's `LeakyRelu`), through candle's tensor ops on every device.

use candle_core::{Result, Tensor};

use super::{first, Backward, Operation, Reads};

#[derive(Debug, Clone)]
pub struct LeakyRelu {
    pub negative_slope: f32,
}

impl LeakyRelu {
    /// `1` where `x > 0`, the slope elsewhere: the derivative, in `x`'s dtype.
    fn slope(&self, x: &Tensor) -> Result<Tensor> {
        let positive = x.gt(0f64)?.to_dtype(x.dtype())?;
        let a = self.negative_slope as f64;
        positive.affine(1.0 - a, a)
    }
}

impl Operation for LeakyRelu {
    fn kind(&self) -> &'static str {
        "leakyrelu"
    }

    fn attributes(&self) -> String {
        format!("negative slope {}", self.negative_slope)
    }

    fn parameter_count(&self) -> usize {
        0
    }

    fn output_shape(&self, inputs: &[&[usize]]) -> std::result::Result<Vec<usize>, String> {
        Ok(first("leakyrelu", inputs)?.to_vec())
    }

    fn forward(&self, inputs: &[&Tensor]) -> Result<Tensor> {
        let x = inputs[0];
        x * self.slope(x)?
    }

    fn reverse_reads(&self) -> Reads {
        Reads::INPUTS
    }

    fn vjp(&self, at: &Backward, grad: &Tensor) -> Result<Vec<Tensor>> {
        Ok(vec![(grad * self.slope(at.input(0)?)?)?])
    }
}
