//! `x @ weight^T + bias` (PyTorch's `nn.Linear`).

use candle_core::{Result, Tensor};

use super::{first, Backward, Operation, Reads};

#[derive(Debug, Clone)]
pub struct Linear {
    /// `(out, in)`.
    pub weight: Tensor,
    /// `(out,)`.
    pub bias: Option<Tensor>,
}

impl Operation for Linear {
    fn kind(&self) -> &'static str {
        "linear"
    }

    fn attributes(&self) -> String {
        format!("{}->{}", self.weight.dims()[1], self.weight.dims()[0])
    }

    fn parameter_count(&self) -> usize {
        self.weight.elem_count() + self.bias.as_ref().map_or(0, |b| b.elem_count())
    }

    fn output_shape(&self, inputs: &[&[usize]]) -> std::result::Result<Vec<usize>, String> {
        let (o, i) = (self.weight.dims()[0], self.weight.dims()[1]);
        match first("linear", inputs)? {
            [n, f] if *f == i => Ok(vec![*n, o]),
            other => Err(format!("linear expects (N, {i}) input, got {other:?}")),
        }
    }

    fn forward(&self, inputs: &[&Tensor]) -> Result<Tensor> {
        let y = inputs[0].matmul(&self.weight.t()?)?;
        match &self.bias {
            Some(b) => y.broadcast_add(b),
            None => Ok(y),
        }
    }

    fn reverse_reads(&self) -> Reads {
        Reads::NOTHING
    }

    fn vjp(&self, _: &Backward, grad: &Tensor) -> Result<Vec<Tensor>> {
        Ok(vec![grad.matmul(&self.weight)?])
    }
}
