//! The activations view: a layer's channels as a grid of maps (a range of them, or all), or
//! one channel enlarged; a vector output as a strip, captioned with its top units.

use anyhow::{Context, Result};

use super::Rendered;
use crate::model::{Activations, Model, NodeId};
use crate::viz::activations::{ChannelNorm, GridStyle, LayerOutput};
use crate::viz::colormap::Colormap;
use crate::viz::render::{factor_for, upscale};

/// Which channels of the layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Channels {
    All,
    /// `start..end` as a grid (the explorer's pages).
    Range(usize, usize),
    /// One channel, enlarged.
    One(usize),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request {
    pub layer: NodeId,
    pub channels: Channels,
    pub colormap: Colormap,
    pub norm: ChannelNorm,
    /// Maps per grid row.
    pub per_row: usize,
}

/// The view of `request` from a pass that kept the layer's output.
pub fn render(model: &Model, acts: &Activations, request: &Request) -> Result<Rendered> {
    let layer = request.layer;
    let name = &model.graph.node(layer).name;
    let tensor = acts.get(layer).context("the layer's output was not kept")?;
    let out = LayerOutput::from_tensor(tensor)?;
    let chunks = vec![("convscope:layer", name.clone())];
    let style = GridStyle {
        colormap: request.colormap,
        norm: request.norm,
        per_row: request.per_row,
        ..GridStyle::default()
    };
    let count = out.channel_count();
    let (start, end) = match request.channels {
        Channels::One(c) => {
            let img = out.channel_image(c, request.colormap, request.norm)?;
            return Ok(Rendered {
                picture: upscale(&img, factor_for(img.width(), img.height(), 256)),
                caption: format!("{name} channel {c}"),
                what: format!("activations_ch{c}"),
                chunks,
                of_image: true,
            });
        }
        Channels::All => (0, count),
        Channels::Range(start, end) => (start.min(count), end.min(count)),
    };
    let (picture, caption) = match &out {
        LayerOutput::Maps {
            height,
            width,
            data,
            ..
        } => {
            let part = LayerOutput::Maps {
                channels: end - start,
                height: *height,
                width: *width,
                data: data[start * height * width..end * height * width].to_vec(),
            };
            let caption = format!("{name}: channels {start}..{end} of {count}");
            (part.grid_image(&style)?, caption)
        }
        LayerOutput::Vector(_) => {
            let top: Vec<String> = out
                .top_units(5)
                .iter()
                .map(|(i, v)| format!("{}={v:.2}", unit_name(model, layer, *i)))
                .collect();
            let caption = format!("{name}: top units {}", top.join(" "));
            (out.grid_image(&style)?, caption)
        }
    };
    let what = match (start, end) {
        (0, e) if e == count => "activations_grid".to_string(),
        (s, e) => format!("activations_{s}-{e}"),
    };
    Ok(Rendered {
        picture,
        caption,
        what,
        chunks,
        of_image: true,
    })
}

/// A unit's name: its class label at the network's output, else its index.
fn unit_name(model: &Model, layer: NodeId, unit: usize) -> String {
    match layer == model.graph.output() {
        true => model
            .labels
            .get(unit)
            .cloned()
            .unwrap_or_else(|| unit.to_string()),
        false => unit.to_string(),
    }
}
