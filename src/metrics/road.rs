//! ROAD, RemOve And Debias (Rong et al. 2022), as pytorch-grad-cam's `metrics/road.py`: the
//! pixels a map ranks above (most relevant first, MoRF) or below (least relevant first, LeRF) a
//! percentile are replaced by a noisy linear infilling from their neighbours, so that what is
//! removed leaves no tell-tale shape; the class's probability is taken after each. A good map
//! loses the class fast under MoRF and keeps it under LeRF: `combined = (LeRF - MoRF) / 2`
//! (higher is better), averaged over the percentiles 10, 20, ..., 90.

use anyhow::Result;
use candle_core::Tensor;
use rand::{rngs::StdRng, SeedableRng};
use rand_distr::{Distribution, Normal};
use rayon::prelude::*;

use super::class_probabilities;
use crate::model::Model;

/// pytorch-grad-cam's percentiles.
pub const PERCENTILES: [f32; 9] = [10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 70.0, 80.0, 90.0];

/// The neighbours of a pixel and their weights in the infilling (row, column offsets).
const NEIGHBOURS: [((isize, isize), f64); 8] = [
    ((1, 1), 1.0 / 12.0),
    ((0, 1), 1.0 / 6.0),
    ((-1, 1), 1.0 / 12.0),
    ((1, -1), 1.0 / 12.0),
    ((0, -1), 1.0 / 6.0),
    ((-1, -1), 1.0 / 12.0),
    ((1, 0), 1.0 / 6.0),
    ((-1, 0), 1.0 / 6.0),
];

/// The class's probability after removing by each percentile, both ways.
#[derive(Debug, Clone, PartialEq)]
pub struct Road {
    pub before: f32,
    /// After removing the pixels at or above each percentile of the map (MoRF).
    pub most_relevant_first: Vec<f32>,
    /// After removing the pixels at or above each percentile of `1 - map` (LeRF).
    pub least_relevant_first: Vec<f32>,
}

impl Road {
    /// ROAD of `map` (H x W in 0..1) over `input` (1, C, H, W, normalised) at `percentiles`,
    /// with the infilling's noise (pytorch-grad-cam: 0.01) drawn from `seed`.
    pub fn measure(
        model: &Model,
        input: &Tensor,
        map: &[f32],
        class: usize,
        percentiles: &[f32],
        noise: f32,
        seed: u64,
    ) -> Result<Road> {
        let (_, c, h, w) = input.dims4()?;
        let pixels: Vec<f32> = input.flatten_all()?.to_vec1()?;
        let inverse: Vec<f32> = map.iter().map(|v| 1.0 - v).collect();
        // Each removal on its own thread, with noise from its own seed; each order sorted once
        // for all its percentiles.
        let removals: Vec<(&[f32], f32)> = [map, inverse.as_slice()]
            .into_iter()
            .flat_map(|order| {
                let sorted = sorted(order);
                percentiles
                    .iter()
                    .map(move |&p| (order, ranked(&sorted, p)))
                    .collect::<Vec<_>>()
            })
            .collect();
        let infilled: Vec<Vec<f32>> = removals
            .par_iter()
            .enumerate()
            .map(|(i, &(order, threshold))| {
                let known: Vec<bool> = order.iter().map(|&v| v < threshold).collect();
                let mut rng = StdRng::seed_from_u64(seed.wrapping_mul(64).wrapping_add(i as u64));
                impute(&pixels, (c, h, w), &known, noise, &mut rng)
            })
            .collect();
        let batch: Vec<f32> = infilled.into_iter().flatten().collect();
        let n = percentiles.len();
        let batch = Tensor::from_vec(batch, (2 * n, c, h, w), input.device())?;
        let after = class_probabilities(model, &batch, class)?;
        Ok(Road {
            before: class_probabilities(model, input, class)?[0],
            most_relevant_first: after[..n].to_vec(),
            least_relevant_first: after[n..].to_vec(),
        })
    }

    /// pytorch-grad-cam's `ROADCombined`: half the difference of the mean changes.
    pub fn combined(&self) -> f32 {
        let mean = |v: &[f32]| v.iter().sum::<f32>() / v.len().max(1) as f32;
        (mean(&self.least_relevant_first) - mean(&self.most_relevant_first)) / 2.0
    }
}

/// NumPy's `percentile` (linear interpolation between the two nearest ranks).
pub fn percentile(values: &[f32], p: f32) -> f32 {
    ranked(&sorted(values), p)
}

fn sorted(values: &[f32]) -> Vec<f32> {
    let mut sorted = values.to_vec();
    sorted.sort_by(f32::total_cmp);
    sorted
}

/// [`percentile`] of values already sorted.
fn ranked(sorted: &[f32], p: f32) -> f32 {
    let rank = f64::from(p) / 100.0 * (sorted.len() - 1) as f64;
    let (low, high) = (rank.floor() as usize, rank.ceil() as usize);
    let t = (rank - low as f64) as f32;
    sorted[low] + t * (sorted[high] - sorted[low])
}

/// pytorch-grad-cam's `NoisyLinearImputer`: every pixel not `known` becomes the weighted mean
/// of its neighbours inside the image (known ones with their values, unknown ones as
/// unknowns: one sparse linear system per channel, solved here by conjugate gradients), plus
/// Gaussian noise of standard deviation `noise`.
pub fn impute(
    values: &[f32],
    (c, h, w): (usize, usize, usize),
    known: &[bool],
    noise: f32,
    rng: &mut StdRng,
) -> Vec<f32> {
    let unknown: Vec<usize> = (0..h * w).filter(|&i| !known[i]).collect();
    let mut index = vec![usize::MAX; h * w];
    for (k, &i) in unknown.iter().enumerate() {
        index[i] = k;
    }
    // Each equation: its diagonal (the weight of the neighbours inside the image) and its
    // unknown neighbours with their weights; the system is -A x = b with A symmetric positive
    // definite where every region of unknowns touches a known pixel.
    let mut diagonal = vec![0.0f64; unknown.len()];
    let mut links: Vec<Vec<(usize, f64)>> = vec![Vec::new(); unknown.len()];
    let mut known_links: Vec<Vec<(usize, f64)>> = vec![Vec::new(); unknown.len()];
    for (k, &i) in unknown.iter().enumerate() {
        let (y, x) = ((i / w) as isize, (i % w) as isize);
        for ((dy, dx), weight) in NEIGHBOURS {
            let (ny, nx) = (y + dy, x + dx);
            if ny < 0 || nx < 0 || ny >= h as isize || nx >= w as isize {
                continue;
            }
            diagonal[k] += weight;
            let j = ny as usize * w + nx as usize;
            match known[j] {
                true => known_links[k].push((j, weight)),
                false => links[k].push((index[j], weight)),
            }
        }
    }
    let normal = Normal::new(0.0f32, noise.max(0.0)).expect("a valid deviation");
    let mut out = values.to_vec();
    for ch in 0..c {
        let plane = &values[ch * h * w..(ch + 1) * h * w];
        let b: Vec<f64> = known_links
            .iter()
            .map(|l| l.iter().map(|&(j, wt)| wt * f64::from(plane[j])).sum())
            .collect();
        let x = conjugate_gradient(&diagonal, &links, &b);
        for (k, &i) in unknown.iter().enumerate() {
            let jitter = if noise > 0.0 { normal.sample(rng) } else { 0.0 };
            out[ch * h * w + i] = x[k] as f32 + jitter;
        }
    }
    out
}

/// Solves `M x = b` for `M = diag(diagonal) - links` (symmetric positive definite).
fn conjugate_gradient(diagonal: &[f64], links: &[Vec<(usize, f64)>], b: &[f64]) -> Vec<f64> {
    let apply = |v: &[f64]| -> Vec<f64> {
        (0..v.len())
            .map(|k| diagonal[k] * v[k] - links[k].iter().map(|&(j, w)| w * v[j]).sum::<f64>())
            .collect()
    };
    let dot = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f64>();
    let mut x = vec![0.0; b.len()];
    let mut r = b.to_vec();
    let mut p = r.clone();
    let mut rr = dot(&r, &r);
    // A residual a millionth of the right-hand side's: far below a pixel's float precision.
    let tolerance = 1e-12 * dot(b, b).max(1e-300);
    for _ in 0..10 * b.len().max(1) {
        if rr <= tolerance {
            break;
        }
        let mp = apply(&p);
        let alpha = rr / dot(&p, &mp);
        for k in 0..x.len() {
            x[k] += alpha * p[k];
            r[k] -= alpha * mp[k];
        }
        let next = dot(&r, &r);
        let beta = next / rr;
        rr = next;
        for k in 0..p.len() {
            p[k] = r[k] + beta * p[k];
        }
    }
    x
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn infilling_is_linear_between_known_pixels() {
        // A ramp with its middle column unknown: the infilling gives the ramp back.
        let (h, w) = (5, 5);
        let values: Vec<f32> = (0..h * w).map(|i| (i % w) as f32).collect();
        let known: Vec<bool> = (0..h * w).map(|i| i % w != 2).collect();
        let mut rng = StdRng::seed_from_u64(0);
        let out = impute(&values, (1, h, w), &known, 0.0, &mut rng);
        for (a, b) in out.iter().zip(&values) {
            assert!((a - b).abs() < 1e-5, "{a} against {b}");
        }
        assert_eq!(percentile(&[1.0, 2.0, 3.0, 4.0], 50.0), 2.5);
        assert_eq!(percentile(&[5.0, 1.0, 3.0], 100.0), 5.0);
    }
}
