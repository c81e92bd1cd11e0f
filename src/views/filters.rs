//! The filters view: patterns that excite a layer's channels (gradient ascent from noise), as
//! a grid; the settings a layer gets by default are decided here for both front ends.

use std::sync::atomic::AtomicBool;

use anyhow::Result;

use super::Rendered;
use crate::model::{Model, NodeId};
use crate::viz::filters::{optimise, pattern_grid, FilterSettings, Objective, Pattern, Recipe};

#[derive(Debug, Clone)]
pub struct Request {
    pub layer: NodeId,
    pub channels: Vec<usize>,
    pub settings: FilterSettings,
}

/// The settings a layer gets unless told otherwise: the recipe's reference settings, the image
/// no larger than the network's input (and at least 64 pixels), and the objective its output
/// allows (a unit of a vector output, a channel's mean of a map).
pub fn default_settings(model: &Model, layer: NodeId, recipe: Recipe) -> FilterSettings {
    let mut settings = FilterSettings::new(recipe);
    let (_, h, w) = model.graph.input_size();
    settings.size = settings.size.min(h.max(w)).max(64);
    if model.graph.node(layer).shape.len() == 2 {
        settings.objective = Objective::Unit;
    }
    settings
}

/// The patterns of `request`'s channels, reporting `(done, total)` steps, stopped by `cancel`.
pub fn render(
    model: &Model,
    request: &Request,
    progress: &mut dyn FnMut(usize, usize),
    cancel: &AtomicBool,
) -> Result<(Rendered, Vec<Pattern>)> {
    let Request {
        layer,
        channels,
        settings,
    } = request;
    let node = model.graph.node(*layer);
    let count = node.shape[1];
    let patterns = optimise(model, *layer, channels, settings, progress, cancel)?;
    let recipe = format!("{:?}", settings.recipe).to_lowercase();
    let (listed, what) = match contiguous(channels) {
        Some((0, end)) if end == count => (format!("0..{end}"), format!("filters_{recipe}")),
        Some((start, end)) => (
            format!("{start}..{end}"),
            format!("filters_{recipe}_{start}-{end}"),
        ),
        None => {
            let list: Vec<String> = channels.iter().map(usize::to_string).collect();
            (
                list.join(","),
                format!("filters_{recipe}_{}", list.join("-")),
            )
        }
    };
    let rendered = Rendered {
        picture: pattern_grid(&patterns),
        caption: format!(
            "{}: filter patterns of channels {listed} of {count}",
            node.name
        ),
        what,
        chunks: vec![
            ("convscope:layer", node.name.clone()),
            (
                "convscope:channels",
                patterns
                    .iter()
                    .map(|p| p.channel.to_string())
                    .collect::<Vec<_>>()
                    .join(","),
            ),
            (
                "convscope:recipe",
                format!(
                    "{:?} steps={} size={} seed={}",
                    settings.recipe, settings.steps, settings.size, settings.seed
                ),
            ),
        ],
        of_image: false,
    };
    Ok((rendered, patterns))
}

/// `(start, end)` when the channels are `start..end` in order.
fn contiguous(channels: &[usize]) -> Option<(usize, usize)> {
    let start = *channels.first()?;
    channels
        .iter()
        .enumerate()
        .all(|(i, &c)| c == start + i)
        .then(|| (start, start + channels.len()))
}
