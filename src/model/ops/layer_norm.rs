//! Layer normalisation over the channels at every pixel (ConvNeXt's `LayerNorm2d`, and its
//! channels-last `LayerNorm` between permutes), with a per-channel weight and bias.

use candle_core::{Result, Tensor};

use super::{spatial, Backward, Operation, Reads};
use crate::model::cpu;

#[derive(Debug, Clone)]
pub struct LayerNorm {
    /// `(1, C, 1, 1)`.
    pub weight: Tensor,
    /// `(1, C, 1, 1)`.
    pub bias: Tensor,
    pub eps: f64,
}

impl LayerNorm {
    /// `(x - mean) / sqrt(var + eps)` over channels, and `1 / sqrt(var + eps)`.
    fn normalised(&self, x: &Tensor) -> Result<(Tensor, Tensor)> {
        let centred = x.broadcast_sub(&x.mean_keepdim(1)?)?;
        let inv_std = (centred.sqr()?.mean_keepdim(1)? + self.eps)?
            .sqrt()?
            .recip()?;
        Ok((centred.broadcast_mul(&inv_std)?, inv_std))
    }
}

impl Operation for LayerNorm {
    fn kind(&self) -> &'static str {
        "layernorm"
    }

    fn attributes(&self) -> String {
        format!("over channels, eps {}", self.eps)
    }

    fn parameter_count(&self) -> usize {
        self.weight.elem_count() + self.bias.elem_count()
    }

    fn output_shape(&self, inputs: &[&[usize]]) -> std::result::Result<Vec<usize>, String> {
        let (n, c, h, w) = spatial("layernorm", inputs)?;
        let expected = self.weight.elem_count();
        if expected != c {
            return Err(format!("layernorm expects {expected} channels, got {c}"));
        }
        Ok(vec![n, c, h, w])
    }

    fn forward(&self, inputs: &[&Tensor]) -> Result<Tensor> {
        let x = inputs[0];
        if cpu::handles(x) && cpu::handles(&self.weight) {
            let (weight, bias) = (
                self.weight.flatten_all()?.to_vec1()?,
                self.bias.flatten_all()?.to_vec1()?,
            );
            return cpu::layer_norm::forward(x, &weight, &bias, self.eps as f32);
        }
        let (xhat, _) = self.normalised(x)?;
        xhat.broadcast_mul(&self.weight)?.broadcast_add(&self.bias)
    }

    /// `(g' - mean(g') - x̂ mean(g' x̂)) / sqrt(var + eps)` with `g' = g * weight`, means over
    /// channels.
    fn reverse_reads(&self) -> Reads {
        Reads::INPUTS
    }

    fn vjp(&self, at: &Backward, grad: &Tensor) -> Result<Vec<Tensor>> {
        let x = at.input(0)?;
        if cpu::handles(x) && cpu::handles(grad) && cpu::handles(&self.weight) {
            let weight = self.weight.flatten_all()?.to_vec1()?;
            return Ok(vec![cpu::layer_norm::backward(
                x,
                grad,
                &weight,
                self.eps as f32,
            )?]);
        }
        let (xhat, inv_std) = self.normalised(x)?;
        let g = grad.broadcast_mul(&self.weight)?;
        let projection = xhat.broadcast_mul(&(&g * &xhat)?.mean_keepdim(1)?)?;
        let dx = (g.broadcast_sub(&g.mean_keepdim(1)?)? - projection)?.broadcast_mul(&inv_std)?;
        Ok(vec![dx])
    }
}
