//! Heatmaps over images.

use image::{Rgb, RgbImage};

use super::colormap::Colormap;
use super::resize::resize_bilinear;

/// The colour of a map value in `0..=1`, quantised as `np.uint8(255 * mask)` does (truncating).
fn lookup(lut: &[[u8; 3]], v: f32) -> [u8; 3] {
    let v = if v.is_nan() { 0.0 } else { v.clamp(0.0, 1.0) };
    lut[(255.0 * v) as usize]
}

/// A map in `0..=1` as a colour image of its own size.
pub fn heatmap(map: &[f32], (h, w): (usize, usize), colormap: Colormap) -> RgbImage {
    let lut = colormap.table();
    RgbImage::from_fn(w as u32, h as u32, |x, y| {
        Rgb(lookup(&lut, map[y as usize * w + x as usize]))
    })
}

/// The map resized (bilinear) to the image and blended over it as pytorch-grad-cam's
/// `show_cam_on_image(image / 255, mask, use_rgb=True, image_weight=1 - alpha)` draws it, in
/// the same `f32` steps: the map quantised to 0-255 (truncating) and looked up,
/// `alpha * heat + (1 - alpha) * image` on 0-1 values, divided by its largest value (so the
/// brightest channel is 255), scaled by 255 and truncated.
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
    // pytorch-grad-cam takes the image's weight and gives the heatmap `1 - image_weight`.
    let image_weight = 1.0 - f64::from(alpha);
    let (heat_weight, image_weight) = ((1.0 - image_weight) as f32, image_weight as f32);
    let blended: Vec<[f32; 3]> = image
        .pixels()
        .zip(&resized)
        .map(|(p, &v)| {
            let heat = lookup(&lut, v);
            std::array::from_fn(|c| {
                heat_weight * (f32::from(heat[c]) / 255.0)
                    + image_weight * (f32::from(p.0[c]) / 255.0)
            })
        })
        .collect();
    let max = blended.iter().flatten().copied().fold(0.0f32, f32::max);
    let scale = |v: f32| match max > 0.0 {
        true => (255.0 * (v / max)) as u8,
        false => 0,
    };
    let mut out = RgbImage::new(w as u32, h as u32);
    for (pixel, value) in out.pixels_mut().zip(&blended) {
        *pixel = Rgb(value.map(scale));
    }
    out
}
