//! The CAM view: a class activation map over the image, drawn as pytorch-grad-cam's
//! `show_cam_on_image` draws it, with the map itself for `.npy` and heatmap outputs.

use anyhow::{bail, Result};
use candle_core::Tensor;
use image::RgbImage;

use super::{file_safe, Rendered};
use crate::model::{Model, NodeId};
use crate::viz::cam::{smoothed, CamMap, CamMethod, CamSession};
use crate::viz::colormap::Colormap;
use crate::viz::overlay::overlay;

/// The heatmap's weight in an overlay unless told otherwise (pytorch-grad-cam's).
pub const DEFAULT_ALPHA: f32 = 0.5;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Request {
    pub layer: NodeId,
    pub method: CamMethod,
    pub class: usize,
    pub colormap: Colormap,
    /// Weight of the heatmap in the overlay (pytorch-grad-cam: 0.5).
    pub alpha: f32,
    /// Average the maps of flipped and brightness-scaled inputs (pytorch-grad-cam's
    /// aug_smooth).
    pub aug_smooth: bool,
}

/// The overlay of `request` over `image` (the picture at its own resolution), from a session
/// on the request's layer whose pass took `input`; with the map it shows.
pub fn render(
    model: &Model,
    image: &RgbImage,
    input: &Tensor,
    session: &mut CamSession,
    request: &Request,
) -> Result<(Rendered, CamMap)> {
    let Request {
        layer,
        method,
        class,
        ..
    } = *request;
    let name = &model.graph.node(layer).name;
    let label = &model.labels[class];
    let map = match request.aug_smooth {
        true => smoothed(session, model, input, layer, method, class)?,
        false => session.compute(method, class)?,
    };
    if let Some(reason) = map.empty_reason(label, name) {
        bail!("{reason}");
    }
    let picture = overlay(image, &map.map, map.size, request.colormap, request.alpha);
    let rendered = Rendered {
        picture,
        caption: format!(
            "{} for '{label}' (logit {:.2}) at {name}",
            method.title(),
            map.score
        ),
        what: format!("{}_{}", method.key(), file_safe(label)),
        chunks: vec![
            ("convscope:layer", name.clone()),
            ("convscope:method", method.title().to_string()),
            ("convscope:class", format!("{class} {label}")),
        ],
        of_image: true,
    };
    Ok((rendered, map))
}
