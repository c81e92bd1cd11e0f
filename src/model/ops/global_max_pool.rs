//! The largest value of each channel, `(N, C, H, W) -> (N, C, 1, 1)` (ONNX's `GlobalMaxPool`,
//! PyTorch's `AdaptiveMaxPool2d(1)`). Its gradient goes to the positions that hold the maximum,
//! shared equally among ties (PyTorch sends it to one of them; ties of floats are rare).

use candle_core::{Result, Tensor};

use super::{spatial, Backward, Operation, Reads};

#[derive(Debug, Clone)]
pub struct GlobalMaxPool;

impl Operation for GlobalMaxPool {
    fn kind(&self) -> &'static str {
        "globalmaxpool"
    }

    fn attributes(&self) -> String {
        "output 1x1".into()
    }

    fn parameter_count(&self) -> usize {
        0
    }

    fn output_shape(&self, inputs: &[&[usize]]) -> std::result::Result<Vec<usize>, String> {
        let (n, c, _, _) = spatial("global max pooling", inputs)?;
        Ok(vec![n, c, 1, 1])
    }

    fn forward(&self, inputs: &[&Tensor]) -> Result<Tensor> {
        inputs[0].max_keepdim(3)?.max_keepdim(2)
    }

    fn reverse_reads(&self) -> Reads {
        Reads::INPUTS_AND_OUTPUT
    }

    fn vjp(&self, at: &Backward, grad: &Tensor) -> Result<Vec<Tensor>> {
        let (x, y) = (at.input(0)?, at.output()?);
        let at_max = x.broadcast_eq(y)?.to_dtype(x.dtype())?;
        let ties = at_max.sum_keepdim(3)?.sum_keepdim(2)?;
        Ok(vec![at_max.broadcast_mul(&grad.broadcast_div(&ties)?)?])
    }
}
