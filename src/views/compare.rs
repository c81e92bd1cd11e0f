//! The compare view: CAMs side by side at one layer, either the top-k classes with one method
//! or every method for one class, each panel captioned, in one grid picture.

use anyhow::{bail, Result};
use candle_core::Tensor;
use image::imageops::{self, FilterType};
use image::{Rgb, RgbImage};

use super::{cam, Rendered};
use crate::model::Model;
use crate::viz::cam::{top_classes, CamMethod, CamSession};
use crate::viz::caption::captioned;

/// Panels per grid row at most.
const PER_ROW: usize = 4;
/// Longest side of a panel's picture.
const PANEL_SIDE: u32 = 256;

/// What is compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, clap::ValueEnum)]
pub enum CompareBy {
    /// The top classes (`--top K`, 4 by default), one method.
    Classes,
    /// Every CAM method, one class.
    Methods,
}

/// Classes compared unless told otherwise.
pub const DEFAULT_CLASSES: usize = 4;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Request {
    pub by: CompareBy,
    /// Classes compared.
    pub classes: usize,
    /// The layer, colormap and weight of every panel, the method of a class comparison and the
    /// class of a method comparison.
    pub cam: cam::Request,
}

/// The grid of `request`'s CAMs over `image`. A method that does not apply to the model or
/// the layer (classic CAM without a global-pooled linear head, a map that says nothing) is left
/// out and named in the caption.
pub fn render(
    model: &Model,
    image: &RgbImage,
    input: &Tensor,
    session: &mut CamSession,
    request: &Request,
) -> Result<Rendered> {
    let one = |method, class| cam::Request {
        method,
        class,
        ..request.cam
    };
    let requests: Vec<cam::Request> = match request.by {
        CompareBy::Classes => top_classes(session.logits(), request.classes.max(1))
            .into_iter()
            .map(|c| one(request.cam.method, c))
            .collect(),
        CompareBy::Methods => CamMethod::ALL
            .iter()
            .map(|&m| one(m, request.cam.class))
            .collect(),
    };
    let mut panels = Vec::new();
    let mut left_out = Vec::new();
    let mut first_reason = None;
    for (rank, r) in requests.iter().enumerate() {
        match cam::render(model, image, input, session, r) {
            Ok((rendered, map)) => {
                let label = &model.labels[r.class];
                let caption = match request.by {
                    CompareBy::Classes => format!("{}. {label} {:.2}", rank + 1, map.score),
                    CompareBy::Methods => r.method.title().to_string(),
                };
                panels.push(captioned(&shrink(&rendered.picture), &caption, 1));
            }
            Err(e) if request.by == CompareBy::Methods => {
                first_reason.get_or_insert_with(|| format!("{e:#}"));
                left_out.push(r.method.title());
            }
            Err(e) => return Err(e),
        }
    }
    if panels.is_empty() {
        bail!(
            "no CAM method gives a map here: {}",
            first_reason.unwrap_or_default()
        );
    }
    let name = &model.graph.node(request.cam.layer).name;
    let (caption, what) = match request.by {
        CompareBy::Classes => (
            format!(
                "{} of the top {} classes at {name}",
                request.cam.method.title(),
                panels.len()
            ),
            format!("compare_{}_top{}", request.cam.method.key(), panels.len()),
        ),
        CompareBy::Methods => {
            let label = &model.labels[request.cam.class];
            let skipped = match left_out.is_empty() {
                true => String::new(),
                false => format!(" ({} not here)", left_out.join(", ")),
            };
            (
                format!("CAM methods for '{label}' at {name}{skipped}"),
                format!("compare_methods_{}", super::file_safe(label)),
            )
        }
    };
    Ok(Rendered {
        picture: tile(&panels),
        caption,
        what,
        chunks: vec![("convscope:layer", name.clone())],
        of_image: true,
    })
}

/// A panel's picture no larger than [`PANEL_SIDE`] on its longest side.
fn shrink(picture: &RgbImage) -> RgbImage {
    let (w, h) = picture.dimensions();
    let longest = w.max(h);
    if longest <= PANEL_SIDE {
        return picture.clone();
    }
    let scale = PANEL_SIDE as f64 / longest as f64;
    let size = |v: u32| ((v as f64 * scale).round() as u32).max(1);
    imageops::resize(picture, size(w), size(h), FilterType::Triangle)
}

/// Panels in rows of at most [`PER_ROW`], 4 pixels apart on a dark background.
fn tile(panels: &[RgbImage]) -> RgbImage {
    let gap = 4;
    let columns = panels.len().min(PER_ROW) as u32;
    let rows = panels.len().div_ceil(PER_ROW) as u32;
    let cell_w = panels.iter().map(RgbImage::width).max().unwrap_or(1);
    let cell_h = panels.iter().map(RgbImage::height).max().unwrap_or(1);
    let mut out = RgbImage::from_pixel(
        columns * cell_w + (columns + 1) * gap,
        rows * cell_h + (rows + 1) * gap,
        Rgb([16, 16, 16]),
    );
    for (i, panel) in panels.iter().enumerate() {
        let (col, row) = ((i % PER_ROW) as u32, (i / PER_ROW) as u32);
        let x = gap + col * (cell_w + gap);
        let y = gap + row * (cell_h + gap);
        imageops::replace(&mut out, panel, i64::from(x), i64::from(y));
    }
    out
}
