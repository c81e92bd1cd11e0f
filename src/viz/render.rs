//! Putting pictures together and writing them: grids, nearest-neighbour scaling, safe PNG saves.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use image::{Rgb, RgbImage};

use super::temporary::Temporary;

/// Colour of the gaps between grid cells.
pub const GAP_COLOUR: Rgb<u8> = Rgb([32, 32, 32]);

/// Scales up by an integer factor with nearest neighbour, so map pixels stay sharp.
pub fn upscale(img: &RgbImage, factor: u32) -> RgbImage {
    if factor <= 1 {
        return img.clone();
    }
    image::imageops::resize(
        img,
        img.width() * factor,
        img.height() * factor,
        image::imageops::FilterType::Nearest,
    )
}

/// Smallest integer factor that makes the longer side at least `min_side` pixels.
pub fn factor_for(width: u32, height: u32, min_side: u32) -> u32 {
    min_side.div_ceil(width.max(height).max(1)).max(1)
}

/// Lays equally sized cells out `per_row` to a row with `gap` pixels between them.
pub fn grid(cells: &[RgbImage], per_row: usize, gap: u32) -> RgbImage {
    let Some(first) = cells.first() else {
        return RgbImage::from_pixel(1, 1, GAP_COLOUR);
    };
    let (cw, ch) = first.dimensions();
    let cols = per_row.clamp(1, cells.len()) as u32;
    let rows = cells.len().div_ceil(cols as usize) as u32;
    let mut out = RgbImage::from_pixel(
        cols * cw + (cols - 1) * gap,
        rows * ch + (rows - 1) * gap,
        GAP_COLOUR,
    );
    for (i, cell) in cells.iter().enumerate() {
        let (c, r) = (i as u32 % cols, i as u32 / cols);
        image::imageops::replace(
            &mut out,
            cell,
            (c * (cw + gap)) as i64,
            (r * (ch + gap)) as i64,
        );
    }
    out
}

/// Writes a PNG through a temporary file in the same folder, renamed into place at the end, so
/// no half-written file is ever left behind. `text` entries become PNG text chunks. Saving over
/// a symbolic link writes its target; a replaced file keeps its permissions.
pub fn save_png(img: &RgbImage, path: &Path, text: &[(&str, String)]) -> Result<()> {
    write_png(img, path, text, true)
}

/// Where writing `path` lands: the file a symbolic link points to (through any chain of them),
/// so that saving over a link updates its target and keeps the link.
fn destination(path: &Path) -> PathBuf {
    let mut path = path.to_path_buf();
    for _ in 0..40 {
        match std::fs::read_link(&path) {
            Ok(target) => {
                path = match path.parent() {
                    Some(dir) if target.is_relative() => dir.join(target),
                    _ => target,
                }
            }
            Err(_) => break,
        }
    }
    path
}

fn write_png(
    img: &RgbImage,
    path: &Path,
    text: &[(&str, String)],
    replace_old: bool,
) -> Result<()> {
    let path = &destination(path);
    let fail = || format!("cannot write {}", path.display());
    let mut tmp = Temporary::beside(path, ".png.tmp")?;
    {
        let mut buf = std::io::BufWriter::new(tmp.as_file_mut());
        let mut encoder = png::Encoder::new(&mut buf, img.width(), img.height());
        encoder.set_color(png::ColorType::Rgb);
        encoder.set_depth(png::BitDepth::Eight);
        for (k, v) in text {
            // tEXt holds Latin-1 only; iTXt holds UTF-8 (a CJK class label).
            if v.chars().all(|c| (c as u32) < 0x100) {
                encoder.add_text_chunk(k.to_string(), v.clone())
            } else {
                encoder.add_itxt_chunk(k.to_string(), v.clone())
            }
            .with_context(fail)?;
        }
        let mut writer = encoder.write_header().with_context(fail)?;
        writer.write_image_data(img.as_raw()).with_context(fail)?;
        writer.finish().with_context(fail)?;
        buf.flush().with_context(fail)?;
    }
    tmp.as_file().sync_all().with_context(fail)?;
    if replace_old {
        tmp.replace(path)
    } else {
        tmp.place_new(path)
    }
}

/// Writes a tensor as a NumPy `.npy` file, through a temporary file like [`save_png`].
pub fn save_npy(t: &candle_core::Tensor, path: &Path) -> Result<()> {
    let path = &destination(path);
    let fail = || format!("cannot write {}", path.display());
    let tmp = Temporary::beside(path, ".npy.tmp")?;
    t.write_npy(tmp.path()).with_context(fail)?;
    tmp.replace(path)
}

/// Saves a PNG as `{dir}/{stem}.png`, or `{stem}-2.png`, `{stem}-3.png`, ... if taken: an
/// existing file is never replaced. Returns the path written.
pub fn save_png_new(
    img: &RgbImage,
    dir: &Path,
    stem: &str,
    text: &[(&str, String)],
) -> Result<PathBuf> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let safe: String = stem
        .chars()
        .map(|c| {
            if c.is_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    for n in 1.. {
        let name = if n == 1 {
            format!("{safe}.png")
        } else {
            format!("{safe}-{n}.png")
        };
        let path = dir.join(name);
        if path.exists() {
            continue;
        }
        match write_png(img, &path, text, false) {
            Ok(()) => return Ok(path),
            // Another writer took the name first: try the next one.
            Err(_) if path.exists() => continue,
            Err(e) => return Err(e),
        }
    }
    unreachable!("the loop returns")
}
