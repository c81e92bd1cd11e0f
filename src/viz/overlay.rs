//! Heatmaps over images.

use image::{Rgb, RgbImage};

use super::colormap::Colormap;
use super::resize::resize_bilinear;

/// A map in `0..=1` as a colour image of its own size.
pub fn heatmap(map: &[f32], (h, w): (usize, usize), colormap: Colormap) -> RgbImage {
    let lut = colormap.table();
    RgbImage::from_fn(w as u32, h as u32, |x, y| {
        let v = map[y as usize * w + x as usize];
        Rgb(lut[(v.clamp(0.0, 1.0) * 255.0).round() as usize])
    })
}

/// The map resized (bilinear) to the image and blended over it:
/// `alpha * heat + (1 - alpha) * image` (pytorch-grad-cam's `show_cam_on_image` with
/// `image_weight = 1 - alpha`).
pub fn overlay(
    image: &RgbImage,
    map: &[f32],
    size: (usize, usize),
    colormap: Colormap,
    alpha: f32,
) -> RgbImage {
    let (w, h) = (image.width() as usize, image.height() as usize);
    let resized = resize_bilinear(map, size, (h, w), false);
    let lut = colormap.table();
    RgbImage::from_fn(w as u32, h as u32, |x, y| {
        let v = resized[y as usize * w + x as usize];
        let heat = lut[(v.clamp(0.0, 1.0) * 255.0).round() as usize];
        let p = image.get_pixel(x, y).0;
        Rgb([0, 1, 2].map(|c| {
            (alpha * heat[c] as f32 + (1.0 - alpha) * p[c] as f32)
                .round()
                .clamp(0.0, 255.0) as u8
        }))
    })
}
