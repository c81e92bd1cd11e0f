//! Input images: decoding with memory limits, resizing to the model's input, normalising.

use std::path::Path;

use anyhow::{bail, Context, Result};
use candle_core::{Device, Tensor};
use image::{imageops::FilterType, DynamicImage, ImageDecoder, ImageReader, RgbImage};

use crate::model::Normalisation;

/// Bounds on what an image may cost to decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageLimits {
    /// Largest width or height accepted.
    pub max_side: u32,
    /// Largest decoded size in MiB.
    pub max_mebibytes: u64,
}

impl Default for ImageLimits {
    fn default() -> Self {
        ImageLimits {
            max_side: 16384,
            max_mebibytes: 1024,
        }
    }
}

/// Smallest width and height accepted.
pub const MIN_SIDE: u32 = 8;

/// How an image is fitted to the model's input size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Fit {
    /// Resize the whole image (bilinear), as pytorch-grad-cam's examples do.
    #[default]
    Resize,
    /// torchvision's eval transform: resize the short side to 256/224 of the input, centre crop.
    Center,
}

/// Decodes any format the image crate reads (first frame of a GIF) to 8-bit RGB.
pub fn load_image(path: &Path, limits: ImageLimits) -> Result<RgbImage> {
    let meta =
        std::fs::metadata(path).with_context(|| format!("cannot read image {}", path.display()))?;
    if meta.is_dir() {
        bail!("{} is a folder, not an image", path.display());
    }
    if meta.len() == 0 {
        bail!("image {} is empty", path.display());
    }
    let head = {
        use std::io::Read;
        let mut head = Vec::with_capacity(64);
        std::fs::File::open(path)
            .and_then(|f| f.take(64).read_to_end(&mut head))
            .with_context(|| format!("cannot read image {}", path.display()))?;
        head
    };
    let Ok(format) = image::guess_format(&head) else {
        bail!(
            "{} is not an image in a format convscope reads",
            path.display()
        );
    };
    let mut reader =
        ImageReader::open(path).with_context(|| format!("cannot read image {}", path.display()))?;
    reader.set_format(format);
    let mut l = image::Limits::default();
    l.max_image_width = Some(limits.max_side);
    l.max_image_height = Some(limits.max_side);
    l.max_alloc = Some(limits.max_mebibytes * 1024 * 1024);
    reader.limits(l.clone());
    let img = decode_upright(reader, l).map_err(|e| match e {
        image::ImageError::Limits(_) => anyhow::anyhow!(
            "image {} is larger than the limit ({} px a side, {} MiB decoded)",
            path.display(),
            limits.max_side,
            limits.max_mebibytes
        ),
        e => anyhow::anyhow!("cannot decode image {}: {e}", path.display()),
    })?;
    if img.width() < MIN_SIDE || img.height() < MIN_SIDE {
        bail!(
            "image {} is {}x{} pixels; convscope needs at least {MIN_SIDE}x{MIN_SIDE}",
            path.display(),
            img.width(),
            img.height()
        );
    }
    Ok(img.to_rgb8())
}

/// Decodes within `limits` and turns the picture upright by its EXIF orientation (a phone's
/// portrait photo is stored sideways with orientation 6).
fn decode_upright<R: std::io::BufRead + std::io::Seek>(
    reader: ImageReader<R>,
    mut limits: image::Limits,
) -> image::ImageResult<DynamicImage> {
    let mut decoder = reader.into_decoder()?;
    limits.reserve(decoder.total_bytes())?;
    let orientation = decoder.orientation()?;
    let mut img = DynamicImage::from_decoder(decoder)?;
    img.apply_orientation(orientation);
    Ok(img)
}

/// The image as the network sees it, at its input size.
pub fn fit_image(img: &RgbImage, norm: &Normalisation, fit: Fit) -> RgbImage {
    let (h, w) = (norm.height as u32, norm.width as u32);
    if img.dimensions() == (w, h) {
        return img.clone();
    }
    match fit {
        Fit::Resize => image::imageops::resize(img, w, h, FilterType::Triangle),
        Fit::Center => {
            let scale = 256.0 / 224.0;
            let short = (h.min(w) as f64 * scale).round() as u32;
            let (iw, ih) = img.dimensions();
            let (nw, nh) = if iw <= ih {
                (short, (ih as f64 * short as f64 / iw as f64).round() as u32)
            } else {
                ((iw as f64 * short as f64 / ih as f64).round() as u32, short)
            };
            let resized = image::imageops::resize(img, nw.max(w), nh.max(h), FilterType::Triangle);
            let (x, y) = ((resized.width() - w) / 2, (resized.height() - h) / 2);
            image::imageops::crop_imm(&resized, x, y, w, h).to_image()
        }
    }
}

/// `(1, 3, H, W)` tensor of `(pixel / 255 - mean) / std`.
pub fn to_tensor(
    img: &RgbImage,
    norm: &Normalisation,
    channels: usize,
    device: &Device,
) -> Result<Tensor> {
    let (w, h) = (img.width() as usize, img.height() as usize);
    let mut data = vec![0f32; channels * h * w];
    match channels {
        3 => {
            for (x, y, p) in img.enumerate_pixels() {
                for c in 0..3 {
                    let v = p.0[norm.order.source(c)] as f32 / 255.0;
                    data[c * h * w + y as usize * w + x as usize] =
                        (v - norm.mean[c]) / norm.std[c];
                }
            }
        }
        // A grayscale model: the image's luma (ITU-R 601, as PIL's convert("L")), normalised
        // by the first mean and std.
        1 => {
            for (x, y, p) in img.enumerate_pixels() {
                let [r, g, b] = p.0.map(|v| v as f32);
                let luma = (r * 299.0 + g * 587.0 + b * 114.0) / 1000.0 / 255.0;
                data[y as usize * w + x as usize] = (luma - norm.mean[0]) / norm.std[0];
            }
        }
        n => bail!("the model takes {n} input channels; images feed 3 (RGB) or 1 (gray)"),
    }
    Ok(Tensor::from_vec(data, (1, channels, h, w), device)?)
}
