//! Elementwise activations of the newer CNN families, each with its derivative, as tensor ops (any
//! dtype or device) and as scalar functions for the one-pass CPU kernel: ReLU6
//! (MobileNetV2), SiLU (EfficientNet), Sigmoid and Hardsigmoid (squeeze-and-excitation gates),
//! Hardswish (MobileNetV3) and GELU in its exact erf form (ConvNeXt). ReLU has its own file: it
//! has CPU kernels.

use candle_core::{Result, Tensor};

use super::{first, Backward, Operation, Reads};
use crate::model::cpu;
use crate::model::cpu::fast_math;

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
    /// `f` of every value of `x` by the CPU kernel.
    fn forward_cpu(self, x: &Tensor) -> Result<Tensor> {
        use cpu::elementwise::map;
        match self {
            Function::Relu6 => map(x, scalar::relu6),
            Function::Silu => map(x, scalar::silu),
            Function::Sigmoid => map(x, fast_math::sigmoid),
            Function::Hardsigmoid => map(x, scalar::hardsigmoid),
            Function::Hardswish => map(x, scalar::hardswish),
            Function::Gelu => map(x, scalar::gelu),
        }
    }

    /// `grad * f'(x)` by the CPU kernel.
    fn vjp_cpu(self, x: &Tensor, grad: &Tensor) -> Result<Tensor> {
        use cpu::elementwise::chain;
        match self {
            Function::Relu6 => chain(x, grad, scalar::relu6_slope),
            Function::Silu => chain(x, grad, scalar::silu_slope),
            Function::Sigmoid => chain(x, grad, scalar::sigmoid_slope),
            Function::Hardsigmoid => chain(x, grad, scalar::hardsigmoid_slope),
            Function::Hardswish => chain(x, grad, scalar::hardswish_slope),
            Function::Gelu => chain(x, grad, scalar::gelu_slope),
        }
    }

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
        let (x, f) = (inputs[0], self.0);
        if cpu::handles(x) {
            f.forward_cpu(x)
        } else {
            f.apply(x)
        }
    }

    fn reverse_reads(&self) -> Reads {
        Reads::INPUTS
    }

    fn vjp(&self, at: &Backward, grad: &Tensor) -> Result<Vec<Tensor>> {
        let (x, f) = (at.input(0)?, self.0);
        Ok(vec![if cpu::handles(x) && cpu::handles(grad) {
            f.vjp_cpu(x, grad)?
        } else {
            (grad * f.derivative(x)?)?
        }])
    }
}

/// The functions and their derivatives on one value, for the CPU kernels (which vectorise
/// them: each is inlined into the kernel's loop), with the same choices at the kinks as
/// [`Function::derivative`].
mod scalar {
    use crate::model::cpu::fast_math::{erf, exp, sigmoid};
    use std::f32::consts::{FRAC_1_SQRT_2, FRAC_2_SQRT_PI};

    /// `1.0` where `lo < v < hi`, else `0.0`.
    #[inline(always)]
    fn inside(v: f32, lo: f32, hi: f32) -> f32 {
        if v > lo && v < hi {
            1.0
        } else {
            0.0
        }
    }

    #[inline(always)]
    pub fn relu6(v: f32) -> f32 {
        v.clamp(0.0, 6.0)
    }

    #[inline(always)]
    pub fn relu6_slope(v: f32) -> f32 {
        inside(v, 0.0, 6.0)
    }

    #[inline(always)]
    pub fn silu(v: f32) -> f32 {
        v * sigmoid(v)
    }

    #[inline(always)]
    pub fn silu_slope(v: f32) -> f32 {
        let s = sigmoid(v);
        s * (1.0 + v * (1.0 - s))
    }

    #[inline(always)]
    pub fn sigmoid_slope(v: f32) -> f32 {
        let s = sigmoid(v);
        s * (1.0 - s)
    }

    #[inline(always)]
    pub fn hardsigmoid(v: f32) -> f32 {
        relu6(v + 3.0) / 6.0
    }

    #[inline(always)]
    pub fn hardsigmoid_slope(v: f32) -> f32 {
        inside(v, -3.0, 3.0) / 6.0
    }

    #[inline(always)]
    pub fn hardswish(v: f32) -> f32 {
        v * relu6(v + 3.0) / 6.0
    }

    /// 0 below -3, `v/3 + 1/2` up to 3 (inclusive), 1 above.
    #[inline(always)]
    pub fn hardswish_slope(v: f32) -> f32 {
        if v < -3.0 {
            0.0
        } else if v <= 3.0 {
            v / 3.0 + 0.5
        } else {
            1.0
        }
    }

    /// `v * Phi(v)`.
    #[inline(always)]
    pub fn gelu(v: f32) -> f32 {
        0.5 * v * (1.0 + erf(v * FRAC_1_SQRT_2))
    }

    /// `Phi(v) + v * phi(v)`.
    #[inline(always)]
    pub fn gelu_slope(v: f32) -> f32 {
        let cdf = 0.5 * (1.0 + erf(v * FRAC_1_SQRT_2));
        let pdf = exp(-0.5 * v * v) * (0.5 * FRAC_2_SQRT_PI * FRAC_1_SQRT_2);
        cdf + v * pdf
    }
}
