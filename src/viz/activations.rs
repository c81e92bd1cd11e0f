//! Intermediate activations: every channel of a layer's output as its own 2-D map.

use anyhow::{bail, Result};
use candle_core::Tensor;
use image::RgbImage;
use serde::Serialize;

use super::colormap::Colormap;
use super::render::{factor_for, grid, upscale};

/// How each channel's values are mapped to `0..=1` before colouring.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChannelNorm {
    /// Chollet's: `(x - mean) / std * 64 + 128`, clipped to `0..=255`; all-zero channels stay
    /// dark.
    #[default]
    Standard,
    /// `(x - min) / (max - min)` per channel.
    Minmax,
}

/// Layout settings of an activation grid.
#[derive(Debug, Clone, Copy)]
pub struct GridStyle {
    pub colormap: Colormap,
    pub norm: ChannelNorm,
    pub per_row: usize,
    pub gap: u32,
    /// Each map is scaled up (nearest) until its longer side reaches this many pixels.
    pub min_cell: u32,
}

impl Default for GridStyle {
    fn default() -> Self {
        GridStyle {
            colormap: Colormap::Viridis,
            norm: ChannelNorm::Standard,
            per_row: 16,
            gap: 1,
            min_cell: 32,
        }
    }
}

/// Summary statistics of one channel (or of a whole vector output).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Stats {
    pub mean: f32,
    pub std: f32,
    pub min: f32,
    pub max: f32,
}

impl Stats {
    pub fn of(values: &[f32]) -> Stats {
        let n = values.len().max(1) as f64;
        let mean = values.iter().map(|&v| v as f64).sum::<f64>() / n;
        let var = values
            .iter()
            .map(|&v| (v as f64 - mean).powi(2))
            .sum::<f64>()
            / n;
        Stats {
            mean: mean as f32,
            std: var.sqrt() as f32,
            min: values.iter().copied().fold(f32::INFINITY, f32::min),
            max: values.iter().copied().fold(f32::NEG_INFINITY, f32::max),
        }
    }
}

/// A layer's output for one image, on the CPU: channel maps, or a vector for linear layers.
#[derive(Debug, Clone)]
pub enum LayerOutput {
    Maps {
        channels: usize,
        height: usize,
        width: usize,
        data: Vec<f32>,
    },
    Vector(Vec<f32>),
}

impl LayerOutput {
    /// Takes the first image of a batched node output.
    pub fn from_tensor(t: &Tensor) -> Result<LayerOutput> {
        let t = t.get(0)?.to_dtype(candle_core::DType::F32)?;
        let out = match *t.dims() {
            [c, h, w] => LayerOutput::Maps {
                channels: c,
                height: h,
                width: w,
                data: t.flatten_all()?.to_vec1()?,
            },
            [_] => LayerOutput::Vector(t.to_vec1()?),
            ref d => bail!("cannot show an output of shape {d:?}"),
        };
        let values = match &out {
            LayerOutput::Maps { data, .. } => data,
            LayerOutput::Vector(v) => v,
        };
        if let Some(bad) = values.iter().find(|v| !v.is_finite()) {
            bail!("the layer's output holds {bad} values (an overflow in the network)");
        }
        Ok(out)
    }

    pub fn channel(&self, c: usize) -> &[f32] {
        match self {
            LayerOutput::Maps {
                height,
                width,
                data,
                ..
            } => &data[c * height * width..(c + 1) * height * width],
            LayerOutput::Vector(v) => &v[c..c + 1],
        }
    }

    pub fn channel_count(&self) -> usize {
        match self {
            LayerOutput::Maps { channels, .. } => *channels,
            LayerOutput::Vector(v) => v.len(),
        }
    }

    pub fn channel_stats(&self) -> Vec<Stats> {
        (0..self.channel_count())
            .map(|c| Stats::of(self.channel(c)))
            .collect()
    }

    /// Indices of the `k` largest units of a vector output (or channel means), largest first.
    pub fn top_units(&self, k: usize) -> Vec<(usize, f32)> {
        let mut v: Vec<(usize, f32)> = match self {
            LayerOutput::Vector(v) => v.iter().copied().enumerate().collect(),
            LayerOutput::Maps { .. } => self
                .channel_stats()
                .iter()
                .map(|s| s.mean)
                .enumerate()
                .collect(),
        };
        v.sort_by(|a, b| b.1.total_cmp(&a.1));
        v.truncate(k);
        v
    }

    /// One channel as a colour image at the map's resolution.
    pub fn channel_image(
        &self,
        c: usize,
        colormap: Colormap,
        norm: ChannelNorm,
    ) -> Result<RgbImage> {
        let LayerOutput::Maps {
            channels,
            height,
            width,
            ..
        } = self
        else {
            bail!("a vector output has no channel maps");
        };
        if c >= *channels {
            bail!("channel {c} is out of range: the layer has {channels} channels");
        }
        let unit = normalise(self.channel(c), norm);
        let lut = colormap.table();
        Ok(RgbImage::from_fn(*width as u32, *height as u32, |x, y| {
            let v = unit[y as usize * width + x as usize];
            image::Rgb(lut[(v * 255.0).round() as usize])
        }))
    }

    /// The grid of every channel (maps) or a bar chart of the top units (vectors).
    pub fn grid_image(&self, style: &GridStyle) -> Result<RgbImage> {
        match self {
            LayerOutput::Maps {
                channels,
                height,
                width,
                ..
            } => {
                let factor = factor_for(*width as u32, *height as u32, style.min_cell);
                let cells = (0..*channels)
                    .map(|c| {
                        Ok(upscale(
                            &self.channel_image(c, style.colormap, style.norm)?,
                            factor,
                        ))
                    })
                    .collect::<Result<Vec<_>>>()?;
                Ok(grid(&cells, style.per_row, style.gap))
            }
            LayerOutput::Vector(_) => Ok(self.bar_chart(32, style.colormap)),
        }
    }

    /// Horizontal bars of the top `k` units, longest for the largest value.
    fn bar_chart(&self, k: usize, colormap: Colormap) -> RgbImage {
        let top = self.top_units(k);
        let (lo, hi) = top
            .iter()
            .fold((0f32, f32::MIN), |(lo, hi), &(_, v)| (lo.min(v), hi.max(v)));
        let span = (hi - lo).max(1e-12);
        let (bar_h, width) = (12u32, 400u32);
        let mut img = RgbImage::from_pixel(
            width,
            bar_h * top.len().max(1) as u32,
            super::render::GAP_COLOUR,
        );
        for (row, &(_, v)) in top.iter().enumerate() {
            let t = (v - lo) / span;
            let len = ((t * (width - 1) as f32) as u32).max(1);
            let colour = image::Rgb(colormap.rgb(0.25 + 0.75 * t));
            for y in row as u32 * bar_h + 1..(row as u32 + 1) * bar_h - 1 {
                for x in 0..len {
                    img.put_pixel(x, y, colour);
                }
            }
        }
        img
    }
}

/// Maps a channel's values to `0..=1`.
pub fn normalise(values: &[f32], norm: ChannelNorm) -> Vec<f32> {
    let s = Stats::of(values);
    match norm {
        ChannelNorm::Standard => {
            if values.iter().all(|&v| v == 0.0) {
                return vec![0.0; values.len()];
            }
            let std = if s.std > 0.0 { s.std } else { 1.0 };
            values
                .iter()
                .map(|&v| (((v - s.mean) / std * 64.0 + 128.0).clamp(0.0, 255.0)) / 255.0)
                .collect()
        }
        ChannelNorm::Minmax => {
            let span = s.max - s.min;
            values
                .iter()
                .map(|&v| if span > 0.0 { (v - s.min) / span } else { 0.0 })
                .collect()
        }
    }
}
