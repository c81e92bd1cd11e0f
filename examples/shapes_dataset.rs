//! Writes a shapes dataset as NumPy arrays for training, plus the demo model's sample images.
//!
//!     cargo run --release --example shapes_dataset -- OUT_DIR COUNT SEED
//!
//! OUT_DIR gets `images.npy` (COUNT x 96 x 96 x 3, u8) and `labels.npy` (COUNT x 2, u32): every
//! fifth image holds two shapes of different classes, the others one shape, whose class is then
//! repeated in both columns. With `--samples`, writes
//! `single_shape.png` and `two_shapes.png` into OUT_DIR instead.

use anyhow::{Context, Result};
use candle_core::{Device, Tensor};
use convscope::shapes::{Generator, IMAGE_SIZE};

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let out = std::path::PathBuf::from(
        args.first()
            .context("usage: OUT_DIR COUNT SEED | OUT_DIR --samples")?,
    );
    std::fs::create_dir_all(&out)?;
    if args.get(1).map(String::as_str) == Some("--samples") {
        let mut g = Generator::new(7);
        g.single().image.save(out.join("single_shape.png"))?;
        g.pair().image.save(out.join("two_shapes.png"))?;
        return Ok(());
    }
    let count: usize = args.get(1).context("COUNT")?.parse()?;
    let seed: u64 = args.get(2).context("SEED")?.parse()?;
    let mut g = Generator::new(seed);
    let side = IMAGE_SIZE as usize;
    let mut pixels = Vec::with_capacity(count * side * side * 3);
    let mut labels = Vec::with_capacity(count * 2);
    for i in 0..count {
        let s = if i % 5 == 4 { g.pair() } else { g.single() };
        pixels.extend_from_slice(s.image.as_raw());
        let last = s.objects.len() - 1;
        labels.extend([s.objects[0].class as u32, s.objects[last].class as u32]);
    }
    Tensor::from_vec(pixels, (count, side, side, 3), &Device::Cpu)?
        .write_npy(out.join("images.npy"))?;
    Tensor::from_vec(labels, (count, 2), &Device::Cpu)?.write_npy(out.join("labels.npy"))?;
    Ok(())
}
