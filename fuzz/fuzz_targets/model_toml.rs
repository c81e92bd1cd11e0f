//! model.toml text: parsing and checks, then, for cards with small layers, building the
//! sequential graph (shape inference) with random weights.
#![no_main]

use candle_core::Device;
use convscope::model::arch::sequential::LayerOp;
use convscope::model::card::ModelCard;
use convscope::model::{Arch, RandomWeights};
use libfuzzer_sys::fuzz_target;

/// Whether building would allocate little: the fuzzer looks for logic errors, not for the
/// size of a layer the user asked for.
fn small(card: &ModelCard) -> bool {
    card.input_size.iter().all(|&s| s <= 64)
        && card.layers.len() <= 32
        && card.layers.iter().all(|l| match &l.op {
            LayerOp::Conv2d {
                out_channels,
                kernel,
                ..
            } => out_channels.unwrap_or(1) <= 64 && kernel.unwrap_or(1) <= 9,
            LayerOp::Linear { out_features, .. } => out_features.unwrap_or(1) <= 64,
            LayerOp::AdaptiveAvgPool { output_size } => output_size.iter().all(|&s| s <= 64),
            LayerOp::MaxPool { kernel, .. } | LayerOp::AvgPool { kernel, .. } => *kernel <= 9,
            _ => true,
        })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(card) = ModelCard::parse(text) else {
        return;
    };
    if card.layers.is_empty() || !small(&card) {
        return;
    }
    let mut weights = RandomWeights::new(0, Device::Cpu);
    let input = (3, card.input_size[0], card.input_size[1]);
    let _ = Arch::sequential(card.layers.clone()).build(input, &mut weights);
});
