//! Elementwise activations of the newer CNN families, each with its derivative: ReLU6
//! (MobileNetV2), SiLU (EfficientNet), Sigmoid and Hardsigmoid (squeeze-and-excitation gates),
//! Hardswish (MobileNetV3) and GELU in its exact erf form (ConvNeXt). ReLU has its own file: it
//! has CPU kernels.

use candle_core::{Result, Tensor};

use super::{first, Backward, Operation};

/// Which function, with PyTorch's definitions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Function {
    /// `min(max(x, 0), 6)`.
    Relu6,
    /// `x * sigmoid(x)`.
    Silu,
    /// `1 / (1 + exp(-x))`.
    Sigmoid,
    /// `relu6(x + 3) / 6`.
    Hardsigmoid,
    /// `x * relu6(x + 3) / 6`.
    Hardswish,
    /// `x * Phi(x) = 0.5 * x * (1 + erf(x / sqrt(2)))`.
    Gelu,
}

#[derive(Debug, Clone)]
pub struct Activation(pub Function);

/// `1.0` where `lo < x < hi`, else `0.0`, in `x`'s dtype.
fn inside(x: &Tensor, lo: f64, hi: f64) -> Result<Tensor> {
    x.gt(lo)?.to_dtype(x.dtype())? * x.lt(hi)?.to_dtype(x.dtype())?
}

fn sigmoid(x: &Tensor) -> Result<Tensor> {
    (x.neg()?.exp()? + 1.0)?.recip()
}

impl Function {
    fn apply(self, x: &Tensor) -> Result<Tensor> {
        match self {
            Function::Relu6 => x.clamp(0f32, 6f32),
            Function::Silu => x * sigmoid(x)?,
            Function::Sigmoid => sigmoid(x),
            Function::Hardsigmoid => (x + 3.0)?.clamp(0f32, 6f32)? / 6.0,
            Function::Hardswish => x * ((x + 3.0)?.clamp(0f32, 6f32)? / 6.0)?,
            Function::Gelu => {
                x * ((x / std::f64::consts::SQRT_2)?.erf()? + 1.0)?.affine(0.5, 0.0)?
            }
        }
    }

    /// `f'(x)`, with PyTorch's choices at the kinks (the derivative of the flat side).
    fn derivative(self, x: &Tensor) -> Result<Tensor> {
        match self {
            Function::Relu6 => inside(x, 0.0, 6.0),
            Function::Silu => {
                let s = sigmoid(x)?;
                // s * (1 + x * (1 - s))
                &s * ((x * s.affine(-1.0, 1.0)?)? + 1.0)?
            }
            Function::Sigmoid => {
                let s = sigmoid(x)?;
                &s * s.affine(-1.0, 1.0)?
            }
            Function::Hardsigmoid => inside(x, -3.0, 3.0)? / 6.0,
            Function::Hardswish => {
                // 0 below -3, x/3 + 1/2 up to 3 (inclusive), 1 above.
                let middle =
                    (x.ge(-3.0)?.to_dtype(x.dtype())? * x.le(3.0)?.to_dtype(x.dtype())?)?;
                let above = x.gt(3.0)?.to_dtype(x.dtype())?;
                (middle * x.affine(1.0 / 3.0, 0.5)?)? + above
            }
            Function::Gelu => {
                // Phi(x) + x * phi(x)
                let cdf = ((x / std::f64::consts::SQRT_2)?.erf()? + 1.0)?.affine(0.5, 0.0)?;
                let pdf = (x.sqr()?.affine(-0.5, 0.0)?.exp()?
                    * (1.0 / (2.0 * std::f64::consts::PI).sqrt()))?;
                cdf + (x * pdf)?
            }
        }
    }
}

impl Operation for Activation {
    fn kind(&self) -> &'static str {
        match self.0 {
            Function::Relu6 => "relu6",
            Function::Silu => "silu",
            Function::Sigmoid => "sigmoid",
            Function::Hardsigmoid => "hardsigmoid",
            Function::Hardswish => "hardswish",
            Function::Gelu => "gelu",
        }
    }

    fn attributes(&self) -> String {
        String::new()
    }

    fn parameter_count(&self) -> usize {
        0
    }

    fn output_shape(&self, inputs: &[&[usize]]) -> std::result::Result<Vec<usize>, String> {
        Ok(first(self.kind(), inputs)?.to_vec())
    }

    fn forward(&self, inputs: &[&Tensor]) -> Result<Tensor> {
        self.0.apply(inputs[0])
    }

    fn vjp(&self, at: &Backward, grad: &Tensor) -> Result<Vec<Tensor>> {
        Ok(vec![(grad * self.0.derivative(at.input(0)?)?)?])
    }
}
