//! Architecture detection over arbitrary sets of parameter names and shapes, then building the
//! detected graph from them: every outcome is a graph or an error.
#![no_main]

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor};
use convscope::model::{Arch, CheckpointWeights, StateDict};
use libfuzzer_sys::fuzz_target;

/// Name stems of torchvision's VGG and ResNet parameters, picked by the fuzzer's bytes.
const STEMS: &[&str] = &[
    "features.{}.weight",
    "features.{}.bias",
    "features.{}.running_mean",
    "features.{}.running_var",
    "classifier.{}.weight",
    "classifier.{}.bias",
    "conv1.weight",
    "bn1.weight",
    "bn1.bias",
    "bn1.running_mean",
    "bn1.running_var",
    "fc.weight",
    "fc.bias",
    "layer{}.0.conv1.weight",
    "layer{}.0.conv2.weight",
    "layer{}.0.conv3.weight",
    "layer{}.1.conv1.weight",
    "layer{}.0.bn1.weight",
    "layer{}.0.bn2.weight",
    "layer{}.0.bn3.weight",
    "layer{}.0.downsample.0.weight",
    "layer{}.0.downsample.1.weight",
];

fuzz_target!(|data: &[u8]| {
    let mut tensors = HashMap::new();
    for chunk in data.chunks(6) {
        if chunk.len() < 6 {
            break;
        }
        let name =
            STEMS[chunk[0] as usize % STEMS.len()].replace("{}", &(chunk[1] % 40).to_string());
        // Up to four small dimensions (zero included): detection must cope with any shape.
        let rank = (chunk[2] % 5) as usize;
        let dims: Vec<usize> = chunk[3..]
            .iter()
            .chain([chunk[2]].iter())
            .take(rank)
            .map(|d| (*d % 17) as usize)
            .collect();
        let Ok(t) = Tensor::zeros(dims.as_slice(), DType::F32, &Device::Cpu) else {
            continue;
        };
        tensors.insert(name, t);
    }
    let dict = StateDict::from_tensors(tensors);
    let Ok(arch) = Arch::for_checkpoint(None, &dict) else {
        return;
    };
    let mut weights = CheckpointWeights::new(dict, Device::Cpu);
    let _ = arch.build((3, 32, 32), &mut weights);
});
