//! Where an architecture builder gets its parameters: a checkpoint's state dict (checked name by
//! name and shape by shape) or seeded random initialisation (benchmarks, training from scratch).

use anyhow::{bail, Result};
use candle_core::{Device, Tensor};
use rand::{rngs::StdRng, SeedableRng};
use rand_distr::{Distribution, Normal};

use super::load::StateDict;

/// A source of named parameters with known shapes.
pub trait Weights {
    /// The tensor called `name`, which must have exactly `shape`.
    fn take(&mut self, name: &str, shape: &[usize]) -> Result<Tensor>;
    /// The tensor's shape if the source knows it (checkpoints do; random init does not).
    fn shape_of(&self, name: &str) -> Option<Vec<usize>>;
    fn device(&self) -> &Device;
}

/// Parameters read from a checkpoint.
pub struct CheckpointWeights {
    dict: StateDict,
    device: Device,
}

impl CheckpointWeights {
    pub fn new(dict: StateDict, device: Device) -> Self {
        CheckpointWeights { dict, device }
    }

    pub fn dict(&self) -> &StateDict {
        &self.dict
    }
}

impl Weights for CheckpointWeights {
    fn take(&mut self, name: &str, shape: &[usize]) -> Result<Tensor> {
        match self.dict.get(name) {
            None => bail!("the checkpoint has no weight '{name}' (expected shape {shape:?})"),
            Some(t) if t.dims() != shape => bail!(
                "weight '{name}' has shape {:?}, expected {shape:?}",
                t.dims()
            ),
            Some(t) => {
                let t = t.contiguous()?;
                if !all_finite(&t)? {
                    bail!(
                        "weight '{name}' holds NaN or infinite values; the checkpoint is damaged"
                    );
                }
                Ok(t)
            }
        }
    }

    fn shape_of(&self, name: &str) -> Option<Vec<usize>> {
        self.dict.shape(name).map(|s| s.to_vec())
    }

    fn device(&self) -> &Device {
        &self.device
    }
}

/// Whether every value of `t` is finite (checked without copying on the CPU).
fn all_finite(t: &Tensor) -> Result<bool> {
    if super::cpu::handles(t) {
        return Ok(super::cpu::with_data(t, |v| {
            Ok(v.iter().all(|x| x.is_finite()))
        })?);
    }
    // Elsewhere a sum is NaN or infinite when any value is (or when it overflows f32, which
    // no trained weight does).
    Ok(t.to_dtype(candle_core::DType::F32)?
        .sum_all()?
        .to_scalar::<f32>()?
        .is_finite())
}

/// Seeded random parameters: He-normal weights, zero biases, identity batch norm with slightly
/// perturbed statistics.
pub struct RandomWeights {
    rng: StdRng,
    device: Device,
    /// Everything generated, by name, so it can be saved as a checkpoint.
    pub generated: Vec<(String, Tensor)>,
}

impl RandomWeights {
    pub fn new(seed: u64, device: Device) -> Self {
        RandomWeights {
            rng: StdRng::seed_from_u64(seed),
            device,
            generated: Vec::new(),
        }
    }

    pub fn into_state_dict(self) -> StateDict {
        StateDict::from_tensors(self.generated.into_iter().collect())
    }

    fn normal(&mut self, n: usize, mean: f32, std: f32) -> Vec<f32> {
        let dist = Normal::new(mean, std).expect("std is positive");
        (0..n).map(|_| dist.sample(&mut self.rng)).collect()
    }
}

impl Weights for RandomWeights {
    fn take(&mut self, name: &str, shape: &[usize]) -> Result<Tensor> {
        let n: usize = shape.iter().product();
        let values = if name.ends_with("running_var") {
            self.normal(n, 0.0, 0.1)
                .into_iter()
                .map(|v| 1.0 + v.abs())
                .collect()
        } else if name.ends_with("running_mean") || name.ends_with("bias") {
            self.normal(n, 0.0, 0.01)
        } else if shape.len() == 1 {
            self.normal(n, 1.0, 0.01)
        } else {
            let fan_in: usize = shape[1..].iter().product();
            self.normal(n, 0.0, (2.0 / fan_in as f32).sqrt())
        };
        let t = Tensor::from_vec(values, shape, &self.device)?;
        self.generated.push((name.to_string(), t.clone()));
        Ok(t)
    }

    fn shape_of(&self, _name: &str) -> Option<Vec<usize>> {
        None
    }

    fn device(&self) -> &Device {
        &self.device
    }
}
