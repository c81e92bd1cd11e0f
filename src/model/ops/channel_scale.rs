//! A learned scale per channel (ConvNeXt's layer scale, `x * gamma`).

use candle_core::{Result, Tensor};

use super::{spatial, Backward, Operation, Reads};
use crate::model::cpu;

#[derive(Debug, Clone)]
pub struct ChannelScale {
    /// `(1, C, 1, 1)`.
    pub scale: Tensor,
}

impl Operation for ChannelScale {
    fn kind(&self) -> &'static str {
        "channelscale"
    }

    fn attributes(&self) -> String {
        String::new()
    }

    fn parameter_count(&self) -> usize {
        self.scale.elem_count()
    }

    fn output_shape(&self, inputs: &[&[usize]]) -> std::result::Result<Vec<usize>, String> {
        let (n, c, h, w) = spatial("channel scale", inputs)?;
        let expected = self.scale.elem_count();
        if expected != c {
            return Err(format!(
                "channel scale expects {expected} channels, got {c}"
            ));
        }
        Ok(vec![n, c, h, w])
    }

    fn forward(&self, inputs: &[&Tensor]) -> Result<Tensor> {
        scale(inputs[0], &self.scale)
    }

    fn reverse_reads(&self) -> Reads {
        Reads::NOTHING
    }

    fn vjp(&self, _: &Backward, grad: &Tensor) -> Result<Vec<Tensor>> {
        Ok(vec![scale(grad, &self.scale)?])
    }
}

fn scale(x: &Tensor, s: &Tensor) -> Result<Tensor> {
    if cpu::handles(x) && x.rank() == 4 {
        cpu::planes::affine(x, s, None)
    } else {
        x.broadcast_mul(s)
    }
}
