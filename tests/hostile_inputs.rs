//! A corpus of hostile checkpoints and images run through every subcommand: each run either
//! succeeds or prints one `error:` line and exits with 1; none panics, none runs code from a
//! pickle, none writes a half file, and the peak memory of all runs stays under a bound.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{edited_vgg, fixture};

/// The documented bound on any run's resident memory over this corpus (the fixtures are small
/// models; the bound is about refusing to allocate what a header claims).
const PEAK_MIB: f64 = 1024.0;

/// Peak resident memory of all finished child processes so far, in MiB.
fn children_peak_mib() -> f64 {
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage writes into the struct it is given.
    unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage) };
    usage.ru_maxrss as f64 / 1024.0
}

/// Runs the binary; returns whether it succeeded, after checking the failure contract.
fn run(args: &[&str]) -> bool {
    let out = Command::new(env!("CARGO_BIN_EXE_convscope"))
        .args(args)
        .env("RUST_BACKTRACE", "1")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    if out.status.success() {
        return true;
    }
    assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "{args:?}:\n{stderr}");
    assert!(stderr.starts_with("error: "), "{args:?}: {stderr}");
    assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    false
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

/// A safetensors file whose header declares one 1 TB tensor; the file itself is tiny.
fn terabyte_safetensors() -> Vec<u8> {
    let header = r#"{"features.0.weight":{"dtype":"F32","shape":[262144,1048576],"data_offsets":[0,1099511627776]}}"#;
    let mut v = (header.len() as u64).to_le_bytes().to_vec();
    v.extend_from_slice(header.as_bytes());
    v.extend_from_slice(&[0u8; 64]);
    v
}

/// A PyTorch zip checkpoint whose pickle calls `os.system` on load.
fn pickle_calling_a_function(marker: &Path) -> Vec<u8> {
    let cmd = format!("touch {}", marker.display());
    let mut pkl = b"\x80\x02cos\nsystem\nX".to_vec();
    pkl.extend_from_slice(&(cmd.len() as u32).to_le_bytes());
    pkl.extend_from_slice(cmd.as_bytes());
    pkl.extend_from_slice(b"\x85R.");
    pth_around(&pkl)
}

/// A PyTorch zip archive around a pickle.
fn pth_around(pkl: &[u8]) -> Vec<u8> {
    let mut buf = std::io::Cursor::new(Vec::new());
    let mut zip = zip::ZipWriter::new(&mut buf);
    let opts =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    zip.start_file("archive/data.pkl", opts).unwrap();
    zip.write_all(pkl).unwrap();
    zip.start_file("archive/version", opts).unwrap();
    zip.write_all(b"3\n").unwrap();
    zip.finish().unwrap();
    buf.into_inner()
}

fn vgg_without_convolutions(dir: &Path) -> PathBuf {
    let dev = candle_core::Device::Cpu;
    let tensors = [
        (
            "features.0.weight",
            candle_core::Tensor::zeros((), candle_core::DType::F32, &dev),
        ),
        (
            "classifier.6.weight",
            candle_core::Tensor::zeros((2, 3), candle_core::DType::F32, &dev),
        ),
    ]
    .map(|(n, t)| (n.to_string(), t.unwrap()));
    let path = dir.join("no_convs.safetensors");
    convscope::model::StateDict::from_tensors(tensors.into_iter().collect())
        .save(&path)
        .unwrap();
    path
}

/// The reduced VGG16 fixture with finite weights so large that the activations overflow.
fn overflowing_checkpoint(dir: &Path) -> PathBuf {
    edited_vgg(dir, "overflow.safetensors", |tensors| {
        for name in ["features.0.weight", "features.2.weight"] {
            let t = (&tensors[name] * 1e25).unwrap();
            tensors.insert(name.into(), t);
        }
    })
}

/// The reduced VGG16 fixture with one weight set to NaN and one to infinity.
fn non_finite_checkpoint(dir: &Path) -> PathBuf {
    edited_vgg(dir, "nan_weights.safetensors", |tensors| {
        let t = &tensors["features.0.weight"];
        let mut v = t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        v[3] = f32::NAN;
        v[7] = f32::INFINITY;
        let t = candle_core::Tensor::from_vec(v, t.dims(), t.device()).unwrap();
        tensors.insert("features.0.weight".into(), t);
    })
}

/// A PNG header claiming 20000x20000 pixels, with no pixel data.
fn huge_png() -> Vec<u8> {
    let mut v = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = b"IHDR".to_vec();
    ihdr.extend_from_slice(&20000u32.to_be_bytes());
    ihdr.extend_from_slice(&20000u32.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    v.extend_from_slice(&13u32.to_be_bytes());
    v.extend_from_slice(&ihdr);
    v.extend_from_slice(&crc32fast::hash(&ihdr).to_be_bytes());
    v
}

fn encoded(img: image::DynamicImage, format: image::ImageFormat) -> Vec<u8> {
    let mut buf = std::io::Cursor::new(Vec::new());
    img.write_to(&mut buf, format).unwrap();
    buf.into_inner()
}

#[test]
fn hostile_checkpoints_and_images_through_every_subcommand() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let marker = d.join("pickle-ran");
    let good = std::fs::read(fixture("vgg16_small.safetensors")).unwrap();
    let onnx = std::fs::read(fixture("resnet50_small.onnx")).unwrap();
    let random: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    let models = [
        write(d, "truncated.safetensors", &good[..good.len() / 2]),
        write(d, "empty.safetensors", b""),
        write(d, "wrong_magic.pth", b"GIF89a this is not a checkpoint"),
        write(d, "random.safetensors", &random),
        write(d, "random.pth", &random),
        write(d, "terabyte.safetensors", &terabyte_safetensors()),
        write(d, "pickle_call.pth", &pickle_calling_a_function(&marker)),
        non_finite_checkpoint(d),
        // Found by fuzzing: a 9-byte LONG1 integer (candle's reader overflowed), and VGG-like
        // names without a convolution weight (detection indexed an empty list).
        write(
            d,
            "long_integer.pth",
            &pth_around(b"\x80\x02\x8a\x09\x01\x02\x03\x04\x05\x06\x07\x08\x09."),
        ),
        vgg_without_convolutions(d),
        // ONNX: cut, random and empty files, graphs no exporter writes, a node outside the
        // computed ops, weights outside the model's folder (scripts/make_onnx_fixtures.py).
        write(d, "truncated.onnx", &onnx[..onnx.len() / 2]),
        write(d, "random.onnx", &random),
        write(d, "empty.onnx", b""),
        fixture("onnx_cycle.onnx"),
        fixture("onnx_dangling.onnx"),
        fixture("onnx_oversized.onnx"),
        fixture("onnx_unsupported_op.onnx"),
        fixture("onnx_external/outside.onnx"),
    ];
    let overflow = overflowing_checkpoint(d);
    let sample =
        image::RgbImage::from_fn(80, 64, |x, y| image::Rgb([x as u8 * 3, y as u8 * 4, 90]));
    let gray16 = image::ImageBuffer::<image::Luma<u16>, _>::from_fn(70, 50, |x, y| {
        image::Luma([(x * 900 + y * 300) as u16])
    });
    let png = encoded(sample.into(), image::ImageFormat::Png);
    let images = [
        write(d, "huge.png", &huge_png()),
        write(
            d,
            "one_pixel.png",
            &encoded(image::RgbImage::new(1, 1).into(), image::ImageFormat::Png),
        ),
        write(
            d,
            "gray16.tiff",
            &encoded(gray16.into(), image::ImageFormat::Tiff),
        ),
        fixture("cmyk.jpg"),
        write(d, "truncated.png", &png[..png.len() / 2]),
        write(d, "empty.png", b""),
        write(d, "random.png", &random),
    ];
    let good_model = fixture("vgg16_small.safetensors");
    let good_image = write(d, "good.png", &png);
    let out = d.join("out.png");
    let s = |p: &Path| p.to_str().unwrap().to_string();
    let commands = |model: &str, image: &str| -> Vec<Vec<String>> {
        let o = s(&out);
        [
            vec!["info", model],
            vec!["predict", model, image],
            vec![
                "activations",
                model,
                image,
                "--layer",
                "features.2",
                "-o",
                &o,
            ],
            vec!["cam", model, image, "--layer", "features.23", "-o", &o],
            vec![
                "filters",
                model,
                "--layer",
                "features.2",
                "--channels",
                "0",
                "--steps",
                "2",
                "-o",
                &o,
            ],
        ]
        .into_iter()
        .map(|c| c.into_iter().map(String::from).collect())
        .collect()
    };
    let mut outcomes = Vec::new();
    // Weights that overflow: every view of the overflowing layers, and the prediction, fail
    // with a message; `info` reads only the structure.
    for args in commands(&s(&overflow), &s(&good_image)).into_iter().skip(1) {
        let args: Vec<&str> = args.iter().map(|a| a.as_str()).collect();
        assert!(!run(&args), "{args:?} showed an overflowed output");
        outcomes.push((args.join(" "), false));
    }
    for model in &models {
        for args in commands(&s(model), &s(&good_image)) {
            let args: Vec<&str> = args.iter().map(|a| a.as_str()).collect();
            let ok = run(&args);
            assert!(!ok, "{args:?} accepted a hostile checkpoint");
            outcomes.push((args.join(" "), ok));
        }
    }
    for image in &images {
        for args in commands(&s(&good_model), &s(image))
            .into_iter()
            .skip(1)
            .take(3)
        {
            let args: Vec<&str> = args.iter().map(|a| a.as_str()).collect();
            let ok = run(&args);
            if ok {
                // A success must be a real picture, not a half-written file.
                if args.contains(&"-o") {
                    let img = image::open(&out).unwrap();
                    assert!(img.width() >= 8 && img.height() >= 8, "{args:?}");
                    std::fs::remove_file(&out).unwrap();
                }
            }
            outcomes.push((args.join(" "), ok));
        }
    }
    assert!(!marker.exists(), "the pickle's function was called");
    // Failed runs leave no output and no temporary files behind.
    let leftovers: Vec<_> = std::fs::read_dir(d)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("out") || n.starts_with(".out") || n.contains(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "left behind: {leftovers:?}");
    // Images that are valid, if unusual, are read: 16-bit gray and CMYK.
    for name in ["gray16.tiff", "cmyk.jpg"] {
        let accepted = outcomes
            .iter()
            .filter(|(a, ok)| a.contains(name) && *ok)
            .count();
        assert_eq!(accepted, 3, "{name} was refused");
    }
    let peak = children_peak_mib();
    println!(
        "{} runs, peak resident memory {peak:.0} MiB",
        outcomes.len()
    );
    assert!(peak < PEAK_MIB, "peak memory {peak:.0} MiB over the bound");
}
