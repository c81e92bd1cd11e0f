//! Writes a torchvision-layout checkpoint of a standard architecture with seeded random weights,
//! to try the explorer (and scripts/measure_explorer.py) on a full-size model with no download:
//!
//!     cargo run --release --example random_checkpoint -- vgg16 /tmp/vgg16.safetensors

use std::collections::HashMap;

use anyhow::{Context, Result};
use candle_core::{Device, Tensor};
use convscope::model::{Arch, RandomWeights, Weights};

/// Hands out random parameters and keeps each one under its state-dict name.
struct Recorded {
    source: RandomWeights,
    tensors: HashMap<String, Tensor>,
}

impl Weights for Recorded {
    fn take(&mut self, name: &str, shape: &[usize]) -> Result<Tensor> {
        let t = self.source.take(name, shape)?;
        self.tensors.insert(name.to_string(), t.clone());
        Ok(t)
    }

    fn shape_of(&self, name: &str) -> Option<Vec<usize>> {
        self.source.shape_of(name)
    }

    fn device(&self) -> &Device {
        self.source.device()
    }
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [arch, path] = &args[..] else {
        anyhow::bail!("usage: random_checkpoint ARCH OUT.safetensors (ARCH: vgg16, resnet50, ...)");
    };
    let mut weights = Recorded {
        source: RandomWeights::new(0, Device::Cpu),
        tensors: HashMap::new(),
    };
    Arch::standard(arch, 1000)?.build((3, 224, 224), &mut weights)?;
    candle_core::safetensors::save(&weights.tensors, path)
        .with_context(|| format!("cannot write {path}"))?;
    println!("{path}: {arch}, {} tensors", weights.tensors.len());
    Ok(())
}
