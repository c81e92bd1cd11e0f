//! What a filter pattern maximises, as a seed gradient at the target layer.

use anyhow::{bail, Result};
use candle_core::{Device, Tensor};

/// The quantity gradient ascent raises, for one channel (or unit) per image of a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Objective {
    /// The mean of the channel's activation map.
    #[default]
    Channel,
    /// The channel's activation at the centre of the map.
    Neuron,
    /// One unit of a vector output, e.g. a class logit of the final linear layer.
    Unit,
}

impl Objective {
    /// `d objective_b / d output` for a layer output of shape `dims` (batch first), where image
    /// `b` targets `channels[b]`.
    pub fn seed(self, dims: &[usize], channels: &[usize], device: &Device) -> Result<Tensor> {
        let per_image: usize = dims[1..].iter().product();
        let mut g = vec![0f32; dims[0] * per_image];
        for (b, &c) in channels.iter().enumerate() {
            if c >= dims[1] {
                bail!(
                    "channel {c} is out of range: the layer has {} channels",
                    dims[1]
                );
            }
            let base = b * per_image;
            match (self, dims.len()) {
                (Objective::Unit, 2) => g[base + c] = 1.0,
                (Objective::Unit, _) => {
                    bail!("the unit objective needs a layer with a vector output (a linear layer)")
                }
                (_, 2) => bail!("this layer has a vector output: use the unit objective"),
                (Objective::Channel, _) => {
                    let hw = dims[2] * dims[3];
                    g[base + c * hw..base + (c + 1) * hw].fill(1.0 / hw as f32);
                }
                (Objective::Neuron, _) => {
                    let (h, w) = (dims[2], dims[3]);
                    g[base + c * h * w + (h / 2) * w + w / 2] = 1.0;
                }
            }
        }
        Ok(Tensor::from_vec(g, dims, device)?)
    }

    /// Whether the objective reads one channel of a feature map (not one unit of a vector).
    pub fn reads_one_channel(self) -> bool {
        match self {
            Objective::Channel | Objective::Neuron => true,
            Objective::Unit => false,
        }
    }

    /// Per-image objective values: `<output_b, seed_b>`.
    pub fn values(output: &Tensor, seed: &Tensor) -> Result<Vec<f32>> {
        Ok((output * seed)?.flatten_from(1)?.sum(1)?.to_vec1()?)
    }
}
