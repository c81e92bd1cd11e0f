//! ShuffleNet's channel shuffle: channels seen as a `(groups, C / groups)` grid, transposed.

use candle_core::{Result, Tensor};

use super::{spatial, Backward, Operation, Reads};

#[derive(Debug, Clone)]
pub struct ChannelShuffle {
    pub groups: usize,
}

/// Channel `g * (C / groups) + i` moves to `i * groups + g`.
fn shuffle(x: &Tensor, groups: usize) -> Result<Tensor> {
    let (n, c, h, w) = x.dims4()?;
    x.reshape((n, groups, c / groups, h, w))?
        .transpose(1, 2)?
        .contiguous()?
        .reshape((n, c, h, w))
}

impl Operation for ChannelShuffle {
    fn kind(&self) -> &'static str {
        "channelshuffle"
    }

    fn attributes(&self) -> String {
        format!("groups {}", self.groups)
    }

    fn parameter_count(&self) -> usize {
        0
    }

    fn output_shape(&self, inputs: &[&[usize]]) -> std::result::Result<Vec<usize>, String> {
        let (n, c, h, w) = spatial("channel shuffle", inputs)?;
        if self.groups == 0 || c % self.groups != 0 {
            return Err(format!(
                "{c} channels do not split into {} groups",
                self.groups
            ));
        }
        Ok(vec![n, c, h, w])
    }

    fn forward(&self, inputs: &[&Tensor]) -> Result<Tensor> {
        shuffle(inputs[0], self.groups)
    }

    /// The inverse permutation: a shuffle with the grid's other side as groups.
    fn reverse_reads(&self) -> Reads {
        Reads::NOTHING
    }

    fn vjp(&self, at: &Backward, grad: &Tensor) -> Result<Vec<Tensor>> {
        let c = at.input_shapes[0][1];
        Ok(vec![shuffle(grad, c / self.groups)?])
    }
}
