//! A run of channels `start..start + len` (ShuffleNetV2's `x.chunk(2, dim=1)`: one node per
//! chunk).

use candle_core::{Result, Tensor};

use super::{spatial, Backward, Operation, Reads};

#[derive(Debug, Clone)]
pub struct ChannelSlice {
    pub start: usize,
    pub len: usize,
}

impl Operation for ChannelSlice {
    fn kind(&self) -> &'static str {
        "channelslice"
    }

    fn attributes(&self) -> String {
        format!("channels {}..{}", self.start, self.start + self.len)
    }

    fn parameter_count(&self) -> usize {
        0
    }

    fn output_shape(&self, inputs: &[&[usize]]) -> std::result::Result<Vec<usize>, String> {
        let (n, c, h, w) = spatial("channel slice", inputs)?;
        if self.len == 0 || self.start + self.len > c {
            return Err(format!(
                "channels {}..{} of {c}",
                self.start,
                self.start + self.len
            ));
        }
        Ok(vec![n, self.len, h, w])
    }

    fn forward(&self, inputs: &[&Tensor]) -> Result<Tensor> {
        inputs[0].narrow(1, self.start, self.len)?.contiguous()
    }

    /// The gradient in place, zeros in the other channels.
    fn reverse_reads(&self) -> Reads {
        Reads::NOTHING
    }

    fn vjp(&self, at: &Backward, grad: &Tensor) -> Result<Vec<Tensor>> {
        let c = at.input_shapes[0][1];
        Ok(vec![grad.pad_with_zeros(
            1,
            self.start,
            c - self.start - self.len,
        )?])
    }
}
