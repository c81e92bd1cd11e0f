//! Text on pictures: captions drawn with the public-domain 8x8 bitmap font of `font8x8` (basic
//! Latin and Latin-1; other characters show as `?`).

use font8x8::UnicodeFonts;
use image::{Rgb, RgbImage};

/// Height in pixels of a caption strip at `scale`.
pub fn strip_height(scale: u32) -> u32 {
    8 * scale + 4
}

/// `panel` with `caption` in a dark strip above it (white text, `scale` pixels per font pixel,
/// cut to the panel's width).
pub fn captioned(panel: &RgbImage, caption: &str, scale: u32) -> RgbImage {
    let strip = strip_height(scale);
    let mut out = RgbImage::from_pixel(panel.width(), panel.height() + strip, Rgb([32, 32, 32]));
    image::imageops::replace(&mut out, panel, 0, i64::from(strip));
    draw_text(&mut out, 2, 2, caption, scale, Rgb([255, 255, 255]));
    out
}

/// Draws `text` with its top-left corner at `(x, y)`, clipped to the picture.
pub fn draw_text(img: &mut RgbImage, x: u32, y: u32, text: &str, scale: u32, colour: Rgb<u8>) {
    for (i, c) in text.chars().enumerate() {
        let glyph = font8x8::BASIC_FONTS
            .get(c)
            .or_else(|| font8x8::LATIN_FONTS.get(c))
            .or_else(|| font8x8::BASIC_FONTS.get('?'))
            .unwrap_or([0; 8]);
        let left = x + i as u32 * 8 * scale;
        if left >= img.width() {
            break;
        }
        for (row, bits) in glyph.iter().enumerate() {
            for col in 0..8u32 {
                if bits & (1 << col) == 0 {
                    continue;
                }
                for dy in 0..scale {
                    for dx in 0..scale {
                        let (px, py) = (left + col * scale + dx, y + row as u32 * scale + dy);
                        if px < img.width() && py < img.height() {
                            img.put_pixel(px, py, colour);
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn captions_are_drawn_above_the_panel_in_white() {
        let panel = RgbImage::from_pixel(40, 10, Rgb([200, 0, 0]));
        let out = captioned(&panel, "Ab", 1);
        assert_eq!(out.dimensions(), (40, 22));
        let white = out.pixels().filter(|p| p.0 == [255, 255, 255]).count();
        assert!(white > 10, "{white} white pixels");
        // The text stays in the strip; the panel is unchanged below it.
        assert!(out
            .enumerate_pixels()
            .all(|(_, y, p)| y < 12 || p.0 == [200, 0, 0]));
        // Text past the right edge is cut, not wrapped or panicking.
        let narrow = captioned(&panel, "a long caption for a narrow panel", 2);
        assert_eq!(narrow.width(), 40);
    }
}
