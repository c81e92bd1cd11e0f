//! Deletion and insertion (Petsiuk et al. 2018, RISE): pixels are taken away from the image,
//! most salient first, down to a black image (deletion: a good map makes the class's probability
//! fall fast, a small area under the curve), or put back into a blurred copy (insertion: it
//! should rise fast, a large area). Each curve is `steps + 1` points, computed as one batch.

use anyhow::Result;
use candle_core::Tensor;

use super::class_probabilities;
use crate::model::Model;

/// Sigma of the blur insertion starts from (RISE's `gkern(11, 5)`), in pixels.
const BLUR_SIGMA: f32 = 5.0;

/// The two curves of one map and their areas.
#[derive(Debug, Clone, PartialEq)]
pub struct Curves {
    pub deletion: Vec<f32>,
    pub insertion: Vec<f32>,
}

impl Curves {
    /// Deletion and insertion of `input` (1, C, H, W, normalised) in the order of `map` (H x W),
    /// `steps` equal parts of the pixels at a time. Deletion ends at zero, the normalised
    /// input's mean (RISE's `torch.zeros_like`); insertion starts from a blurred input.
    pub fn measure(
        model: &Model,
        input: &Tensor,
        map: &[f32],
        class: usize,
        steps: usize,
    ) -> Result<Curves> {
        let (_, c, h, w) = input.dims4()?;
        let mut order: Vec<usize> = (0..h * w).collect();
        order.sort_by(|&a, &b| map[b].total_cmp(&map[a]));
        let pixels: Vec<f32> = input.flatten_all()?.to_vec1()?;
        let blurred = blur(&pixels, (c, h, w), BLUR_SIGMA);
        let per_step = (h * w).div_ceil(steps.max(1));
        let curve = |from: &[f32], to: &[f32]| -> Result<Vec<f32>> {
            let mut batch = Vec::with_capacity((steps + 1) * pixels.len());
            let mut current = from.to_vec();
            for step in 0..=steps {
                if step > 0 {
                    let done = ((step - 1) * per_step).min(h * w);
                    for &p in &order[done..(step * per_step).min(h * w)] {
                        for ch in 0..c {
                            current[ch * h * w + p] = to[ch * h * w + p];
                        }
                    }
                }
                batch.extend_from_slice(&current);
            }
            let batch = Tensor::from_vec(batch, (steps + 1, c, h, w), input.device())?;
            class_probabilities(model, &batch, class)
        };
        let black = vec![0.0; pixels.len()];
        Ok(Curves {
            deletion: curve(&pixels, &black)?,
            insertion: curve(&blurred, &pixels)?,
        })
    }

    pub fn deletion_auc(&self) -> f32 {
        area(&self.deletion)
    }

    pub fn insertion_auc(&self) -> f32 {
        area(&self.insertion)
    }
}

/// The area under a curve of evenly spaced points on 0..1 (the trapezoid rule, as RISE's
/// `auc`).
pub fn area(curve: &[f32]) -> f32 {
    match curve {
        [] | [_] => 0.0,
        [first, .., last] => {
            (curve.iter().sum::<f32>() - first / 2.0 - last / 2.0) / (curve.len() - 1) as f32
        }
    }
}

/// A Gaussian blur of each channel of `(c, h, w)` values, separable, edges clamped.
fn blur(values: &[f32], (c, h, w): (usize, usize, usize), sigma: f32) -> Vec<f32> {
    let radius = (3.0 * sigma).ceil() as isize;
    let kernel: Vec<f32> = (-radius..=radius)
        .map(|i| (-(i * i) as f32 / (2.0 * sigma * sigma)).exp())
        .collect();
    let total: f32 = kernel.iter().sum();
    let kernel: Vec<f32> = kernel.iter().map(|k| k / total).collect();
    let pass = |src: &[f32], along_rows: bool| -> Vec<f32> {
        let mut out = vec![0.0; src.len()];
        for ch in 0..c {
            for y in 0..h {
                for x in 0..w {
                    let mut sum = 0.0;
                    for (k, weight) in kernel.iter().enumerate() {
                        let d = k as isize - radius;
                        let (sx, sy) = match along_rows {
                            true => ((x as isize + d).clamp(0, w as isize - 1) as usize, y),
                            false => (x, (y as isize + d).clamp(0, h as isize - 1) as usize),
                        };
                        sum += weight * src[ch * h * w + sy * w + sx];
                    }
                    out[ch * h * w + y * w + x] = sum;
                }
            }
        }
        out
    };
    pass(&pass(values, true), false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn areas_follow_the_trapezoid_rule() {
        assert_eq!(area(&[1.0, 1.0, 1.0]), 1.0);
        assert_eq!(area(&[1.0, 0.0]), 0.5);
        assert!((area(&[0.0, 0.5, 1.0]) - 0.5).abs() < 1e-7);
        // A blur keeps a constant image.
        let flat = blur(&[2.0; 2 * 5 * 7], (2, 5, 7), 5.0);
        assert!(flat.iter().all(|v| (v - 2.0).abs() < 1e-5));
    }
}
