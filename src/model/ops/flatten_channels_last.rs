//! `(N, C, H, W) -> (N, H*W*C)`: a flatten in channels-last order, as Keras's `Flatten` reads a
//! TensorFlow (NHWC) map, so that the `Dense` weights after it line up (ONNX models converted
//! from Keras: `Transpose` to NHWC, then `Reshape`).

use candle_core::{Result, Tensor};

use super::{spatial, Backward, Operation, Reads};

#[derive(Debug, Clone)]
pub struct FlattenChannelsLast;

impl Operation for FlattenChannelsLast {
    fn kind(&self) -> &'static str {
        "flatten"
    }

    fn attributes(&self) -> String {
        "channels last (H, W, C order)".into()
    }

    fn parameter_count(&self) -> usize {
        0
    }

    fn output_shape(&self, inputs: &[&[usize]]) -> std::result::Result<Vec<usize>, String> {
        let (n, c, h, w) = spatial("flatten", inputs)?;
        Ok(vec![n, h * w * c])
    }

    fn forward(&self, inputs: &[&Tensor]) -> Result<Tensor> {
        inputs[0].permute((0, 2, 3, 1))?.flatten_from(1)
    }

    fn reverse_reads(&self) -> Reads {
        Reads::NOTHING
    }

    fn vjp(&self, at: &Backward, grad: &Tensor) -> Result<Vec<Tensor>> {
        let s = &at.input_shapes[0];
        let nhwc = grad.reshape((s[0], s[2], s[3], s[1]))?;
        Ok(vec![nhwc.permute((0, 3, 1, 2))?.contiguous()?])
    }
}
