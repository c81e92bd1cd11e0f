//! Image decoding, fitting and normalisation.

use candle_core::Device;
use convscope::input::{fit_image, load_image, to_tensor, Fit, ImageLimits};
use convscope::model::card::ChannelOrder;
use convscope::model::{ModelCard, Normalisation};
use image::{DynamicImage, ImageBuffer, Luma, LumaA, Rgb, Rgba};

fn gradient() -> image::RgbImage {
    image::RgbImage::from_fn(24, 16, |x, y| Rgb([x as u8 * 10, y as u8 * 15, 200]))
}

#[test]
fn lossless_formats_decode_to_the_same_pixels() {
    let d = tempfile::tempdir().unwrap();
    let img = gradient();
    for ext in ["png", "bmp", "tiff", "webp", "gif"] {
        let p = d.path().join(format!("a.{ext}"));
        DynamicImage::ImageRgb8(img.clone()).save(&p).unwrap();
        let back = load_image(&p, ImageLimits::default()).unwrap();
        if ext == "gif" {
            // GIF quantises colours; the first frame must still be close.
            let diff: u64 = back
                .pixels()
                .zip(img.pixels())
                .map(|(a, b)| {
                    (0..3)
                        .map(|c| (a.0[c] as i64 - b.0[c] as i64).unsigned_abs())
                        .sum::<u64>()
                })
                .sum();
            assert!(
                diff / (24 * 16 * 3) < 12,
                "{ext}: mean difference {}",
                diff / (24 * 16 * 3)
            );
        } else {
            assert_eq!(back, img, "{ext}");
        }
    }
    let p = d.path().join("a.jpg");
    DynamicImage::ImageRgb8(img.clone()).save(&p).unwrap();
    assert_eq!(
        load_image(&p, ImageLimits::default()).unwrap().dimensions(),
        (24, 16)
    );
}

#[test]
fn gray_alpha_and_sixteen_bit_images_become_rgb() {
    let d = tempfile::tempdir().unwrap();
    let gray = ImageBuffer::from_fn(10, 10, |x, _| Luma([x as u8 * 20]));
    let p = d.path().join("gray.png");
    gray.save(&p).unwrap();
    assert_eq!(
        load_image(&p, ImageLimits::default())
            .unwrap()
            .get_pixel(3, 0),
        &Rgb([60, 60, 60])
    );

    let rgba = ImageBuffer::from_fn(10, 10, |_, _| Rgba([10u8, 20, 30, 0]));
    let p = d.path().join("rgba.png");
    rgba.save(&p).unwrap();
    assert_eq!(
        load_image(&p, ImageLimits::default())
            .unwrap()
            .get_pixel(0, 0),
        &Rgb([10, 20, 30])
    );

    let deep = ImageBuffer::from_fn(10, 10, |_, _| Luma([65535u16]));
    let p = d.path().join("deep.tiff");
    deep.save(&p).unwrap();
    assert_eq!(
        load_image(&p, ImageLimits::default())
            .unwrap()
            .get_pixel(0, 0),
        &Rgb([255, 255, 255])
    );

    let la = ImageBuffer::from_fn(10, 10, |_, _| LumaA([128u8, 255]));
    let p = d.path().join("la.png");
    la.save(&p).unwrap();
    assert_eq!(
        load_image(&p, ImageLimits::default())
            .unwrap()
            .get_pixel(0, 0),
        &Rgb([128, 128, 128])
    );
}

#[test]
fn limits_refuse_large_images() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("wide.png");
    image::RgbImage::new(300, 20).save(&p).unwrap();
    let limits = ImageLimits {
        max_side: 256,
        max_mebibytes: 1,
    };
    let err = load_image(&p, limits).unwrap_err();
    assert!(err.to_string().contains("larger than the limit"), "{err}");
}

fn norm(h: usize, w: usize) -> Normalisation {
    Normalisation {
        height: h,
        width: w,
        mean: [0.5, 0.25, 0.0],
        std: [0.5, 0.25, 1.0],
        order: ChannelOrder::Rgb,
    }
}

#[test]
fn fitting_resizes_or_centre_crops_and_keeps_exact_sizes() {
    let img = gradient();
    assert_eq!(
        fit_image(&img, &norm(16, 24), Fit::Resize),
        img,
        "an image at the input size is used as is"
    );
    assert_eq!(
        fit_image(&img, &norm(8, 8), Fit::Resize).dimensions(),
        (8, 8)
    );
    let wide =
        image::RgbImage::from_fn(400, 200, |x, _| Rgb([if x < 200 { 0 } else { 255 }, 0, 0]));
    let c = fit_image(&wide, &norm(224, 224), Fit::Center);
    assert_eq!(c.dimensions(), (224, 224));
    // The centre crop keeps the middle: left half dark, right half bright.
    assert!(c.get_pixel(10, 100).0[0] < 30 && c.get_pixel(213, 100).0[0] > 225);
}

#[test]
fn tensors_are_normalised_per_channel() {
    let img = image::RgbImage::from_pixel(4, 3, Rgb([255, 0, 51]));
    let t = to_tensor(&img, &norm(3, 4), 3, &Device::Cpu).unwrap();
    assert_eq!(t.dims(), [1, 3, 3, 4]);
    let v: Vec<f32> = t.flatten_all().unwrap().to_vec1().unwrap();
    assert!((v[0] - 1.0).abs() < 1e-6);
    assert!((v[12] + 1.0).abs() < 1e-6);
    assert!((v[24] - 0.2).abs() < 1e-6);
}

#[test]
fn keras_preprocessing_modes_give_keras_inputs() {
    // One pixel (R, G, B) = (255, 0, 51), through each of keras.applications' modes.
    let img = image::RgbImage::from_pixel(2, 1, Rgb([255, 0, 51]));
    let first_column = |toml: &str| -> Vec<f32> {
        let card = ModelCard::parse(toml).unwrap();
        let mut n = card.normalisation();
        (n.height, n.width) = (1, 2);
        let t = to_tensor(&img, &n, 3, &Device::Cpu).unwrap();
        let v: Vec<f32> = t.flatten_all().unwrap().to_vec1().unwrap();
        vec![v[0], v[2], v[4]]
    };
    let close = |a: Vec<f32>, b: [f32; 3]| {
        assert!(
            a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-4),
            "{a:?} != {b:?}"
        );
    };
    // "tf": x / 127.5 - 1.
    close(
        first_column("weights = \"m.onnx\"\npreprocessing = \"tf\""),
        [1.0, -1.0, -0.6],
    );
    // "caffe": BGR, less the BGR mean, 0-255.
    close(
        first_column("weights = \"m.onnx\"\npreprocessing = \"caffe\""),
        [51.0 - 103.939, 0.0 - 116.779, 255.0 - 123.68],
    );
    // "torch": ImageNet's statistics, as without a preset.
    close(
        first_column("weights = \"m.onnx\"\npreprocessing = \"torch\""),
        first_column("weights = \"m.onnx\"").try_into().unwrap(),
    );
    // BGR with explicit statistics, given in the model's order.
    close(
        first_column(
            "weights = \"m.onnx\"\nchannel_order = \"bgr\"\nmean = [0.2, 0.0, 0.0]\nstd = [1.0, 1.0, 0.5]",
        ),
        [0.2 - 0.2, 0.0, 2.0],
    );
    let err =
        ModelCard::parse("weights = \"m.onnx\"\npreprocessing = \"caffe\"\nmean = [0.5, 0.5, 0.5]")
            .unwrap_err();
    assert!(err.to_string().contains("give one or the others"), "{err}");
}

/// `jpeg` with an EXIF segment (APP1) saying `orientation`, inserted after its start marker.
fn with_exif_orientation(jpeg: &[u8], orientation: u16) -> Vec<u8> {
    // Little-endian TIFF header, one IFD entry: tag 0x0112 (Orientation), type SHORT, count 1.
    let mut tiff = b"II*\0\x08\0\0\0".to_vec();
    tiff.extend_from_slice(&1u16.to_le_bytes());
    tiff.extend_from_slice(&0x0112u16.to_le_bytes());
    tiff.extend_from_slice(&3u16.to_le_bytes());
    tiff.extend_from_slice(&1u32.to_le_bytes());
    tiff.extend_from_slice(&orientation.to_le_bytes());
    tiff.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
    let mut segment = b"Exif\0\0".to_vec();
    segment.extend_from_slice(&tiff);
    let mut out = jpeg[..2].to_vec();
    out.extend_from_slice(&[0xFF, 0xE1]);
    out.extend_from_slice(&((segment.len() + 2) as u16).to_be_bytes());
    out.extend_from_slice(&segment);
    out.extend_from_slice(&jpeg[2..]);
    out
}

#[test]
fn exif_orientation_turns_a_photo_upright() {
    // 30x20, left half red and right half blue; orientation 6 means "rotate 90° clockwise to
    // display", so upright it is 20x30 with red on top.
    let img = image::RgbImage::from_fn(30, 20, |x, _| {
        if x < 15 {
            Rgb([230, 20, 20])
        } else {
            Rgb([20, 20, 230])
        }
    });
    let mut jpeg = Vec::new();
    DynamicImage::ImageRgb8(img)
        .write_to(
            &mut std::io::Cursor::new(&mut jpeg),
            image::ImageFormat::Jpeg,
        )
        .unwrap();
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("phone.jpg");
    std::fs::write(&p, with_exif_orientation(&jpeg, 6)).unwrap();
    let upright = load_image(&p, ImageLimits::default()).unwrap();
    assert_eq!(upright.dimensions(), (20, 30));
    let (top, bottom) = (upright.get_pixel(10, 3), upright.get_pixel(10, 26));
    assert!(
        top.0[0] > 150 && top.0[2] < 100,
        "top {top:?} should be red"
    );
    assert!(
        bottom.0[2] > 150 && bottom.0[0] < 100,
        "bottom {bottom:?} should be blue"
    );
    // Without the EXIF segment the same file stays as stored.
    std::fs::write(&p, &jpeg).unwrap();
    assert_eq!(
        load_image(&p, ImageLimits::default()).unwrap().dimensions(),
        (30, 20)
    );
}
