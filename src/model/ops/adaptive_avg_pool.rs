//! PyTorch's `AdaptiveAvgPool2d((h, w))`: average over PyTorch's bins, computed as two small
//! matrix products (global pooling as a mean per plane).

use candle_core::{Result, Tensor};

use super::{spatial, Backward, Operation, Reads};
use crate::model::cpu;

#[derive(Debug, Clone)]
pub struct AdaptiveAvgPool {
    pub out_h: usize,
    pub out_w: usize,
}

impl Operation for AdaptiveAvgPool {
    fn kind(&self) -> &'static str {
        "adaptiveavgpool"
    }

    fn attributes(&self) -> String {
        format!("output {}x{}", self.out_h, self.out_w)
    }

    fn parameter_count(&self) -> usize {
        0
    }

    fn output_shape(&self, inputs: &[&[usize]]) -> std::result::Result<Vec<usize>, String> {
        let (n, c, _, _) = spatial("adaptive pooling", inputs)?;
        Ok(vec![n, c, self.out_h, self.out_w])
    }

    fn forward(&self, inputs: &[&Tensor]) -> Result<Tensor> {
        let x = inputs[0];
        let (_, _, h, w) = x.dims4()?;
        if (h, w) == (self.out_h, self.out_w) {
            return Ok(x.clone());
        }
        if (self.out_h, self.out_w) == (1, 1) {
            return if cpu::handles(x) {
                cpu::planes::means(x)
            } else {
                x.mean_keepdim(2)?.mean_keepdim(3)
            };
        }
        let mh = bins(self.out_h, h, x)?;
        let mw = bins(self.out_w, w, x)?;
        mh.broadcast_matmul(&x.contiguous()?)?
            .broadcast_matmul(&mw.t()?)
    }

    fn reverse_reads(&self) -> Reads {
        Reads::NOTHING
    }

    fn vjp(&self, at: &Backward, grad: &Tensor) -> Result<Vec<Tensor>> {
        let (h, w) = at.input_size(0);
        let (n, c, out_h, out_w) = grad.dims4()?;
        if (h, w) == (out_h, out_w) {
            return Ok(vec![grad.clone()]);
        }
        if (out_h, out_w) == (1, 1) {
            let factor = 1.0 / (h * w) as f64;
            return Ok(vec![if cpu::handles(grad) {
                cpu::planes::spread(grad, (h, w), factor as f32)?
            } else {
                grad.broadcast_as((n, c, h, w))?.affine(factor, 0.0)?
            }]);
        }
        let mh = bins(out_h, h, grad)?;
        let mw = bins(out_w, w, grad)?;
        Ok(vec![mh
            .t()?
            .broadcast_matmul(&grad.contiguous()?)?
            .broadcast_matmul(&mw)?])
    }
}

/// `(out, size)` matrix averaging PyTorch's adaptive bins `[floor(i*n/o), ceil((i+1)*n/o))`.
fn bins(out: usize, size: usize, like: &Tensor) -> Result<Tensor> {
    let mut m = vec![0f32; out * size];
    for i in 0..out {
        let start = i * size / out;
        let end = ((i + 1) * size).div_ceil(out);
        for j in start..end {
            m[i * size + j] = 1.0 / (end - start) as f32;
        }
    }
    Tensor::from_vec(m, (out, size), like.device())
}
