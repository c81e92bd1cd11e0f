//! The headless subcommands on the fixture models: what they print and write.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::fixture;

fn run(args: &[&str], cwd: &Path) -> Output {
    common::convscope_ok(args, Some(cwd))
}

fn json(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap()
}

fn image(dir: &Path) -> String {
    let p = dir.join("img.png");
    image::RgbImage::from_fn(90, 70, |x, y| {
        image::Rgb([(x * 3) as u8, (y * 3) as u8, ((x + y) * 2) as u8])
    })
    .save(&p)
    .unwrap();
    p.to_str().unwrap().to_string()
}

#[test]
fn info_lists_nodes_with_shapes_and_parameters() {
    let d = tempfile::tempdir().unwrap();
    let m = fixture("resnet50_small.safetensors");
    let v = json(&run(&["info", m.to_str().unwrap(), "--json"], d.path()));
    assert_eq!(v["architecture"], "resnet50");
    assert_eq!(v["classes"], 10);
    let nodes = v["nodes"].as_array().unwrap();
    let pool = nodes.iter().find(|n| n["name"] == "maxpool").unwrap();
    assert_eq!(pool["shape"], serde_json::json!([4, 56, 56]));
    let add = nodes.iter().find(|n| n["name"] == "layer1.0.add").unwrap();
    assert_eq!(
        add["inputs"],
        serde_json::json!(["layer1.0.bn3", "layer1.0.downsample.1"])
    );
    let text = String::from_utf8(run(&["info", m.to_str().unwrap()], d.path()).stdout).unwrap();
    assert!(
        text.starts_with("resnet50_small (resnet50): 96782 parameters"),
        "{text}"
    );
    assert!(
        text.contains("layer4") && text.contains("kernel 3x3, stride 2, padding 1"),
        "{text}"
    );
}

#[test]
fn predict_json_has_top_classes_and_every_logit() {
    let d = tempfile::tempdir().unwrap();
    let img = image(d.path());
    let m = fixture("vgg16_small.pth");
    let v = json(&run(
        &["predict", m.to_str().unwrap(), &img, "--json", "--top", "3"],
        d.path(),
    ));
    let logits = v["logits"].as_array().unwrap();
    assert_eq!(logits.len(), 10);
    let top = v["top"].as_array().unwrap();
    assert_eq!(top.len(), 3);
    let best = logits
        .iter()
        .map(|l| l.as_f64().unwrap())
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .unwrap()
        .0;
    assert_eq!(top[0]["class"], best);
    let p: Vec<f64> = top
        .iter()
        .map(|t| t["probability"].as_f64().unwrap())
        .collect();
    assert!(p[0] >= p[1] && p[1] >= p[2] && p[0] <= 1.0);
}

#[test]
fn activations_write_a_grid_a_channel_and_the_raw_tensor() {
    let d = tempfile::tempdir().unwrap();
    let img = image(d.path());
    let m = fixture("vgg16_small.safetensors");
    let grid = d.path().join("grid.png");
    let npy = d.path().join("a.npy");
    let v = json(&run(
        &[
            "activations",
            m.to_str().unwrap(),
            &img,
            "--layer",
            "features.16",
            "-o",
            grid.to_str().unwrap(),
            "--npy",
            npy.to_str().unwrap(),
            "--json",
        ],
        d.path(),
    ));
    assert_eq!(v["shape"], serde_json::json!([16, 28, 28]));
    assert_eq!(v["channels"].as_array().unwrap().len(), 16);
    // 16 maps of 28x28 scaled by 2 to reach 32+ px, in one row with 1-pixel gaps.
    let g = image::open(&grid).unwrap();
    assert_eq!((g.width(), g.height()), (16 * 56 + 15, 56));
    let raw = candle_core::Tensor::read_npy(&npy).unwrap();
    assert_eq!(raw.dims(), [16, 28, 28]);
    let one = d.path().join("one.png");
    run(
        &[
            "activations",
            m.to_str().unwrap(),
            &img,
            "--layer",
            "features.16",
            "--channel",
            "3",
            "-o",
            one.to_str().unwrap(),
        ],
        d.path(),
    );
    let o = image::open(&one).unwrap();
    assert_eq!((o.width(), o.height()), (280, 280));
    // Without -o the picture goes to the output folder under a descriptive name.
    run(
        &[
            "activations",
            m.to_str().unwrap(),
            &img,
            "--layer",
            "features.4",
        ],
        d.path(),
    );
    assert!(d
        .path()
        .join("convscope-out/vgg16_small_img_features.4_activations_grid.png")
        .is_file());
}

#[test]
fn a_config_file_supplies_the_defaults() {
    let d = tempfile::tempdir().unwrap();
    let img = image(d.path());
    let cfg = d.path().join("my.toml");
    std::fs::write(
        &cfg,
        format!(
            "model = {:?}\nimage = {img:?}\noutput_dir = \"pictures\"\n",
            fixture("vgg16_small.safetensors")
        ),
    )
    .unwrap();
    let v = json(&run(
        &["--config", cfg.to_str().unwrap(), "predict", "--json"],
        d.path(),
    ));
    assert_eq!(v["logits"].as_array().unwrap().len(), 10);
    run(
        &[
            "--config",
            cfg.to_str().unwrap(),
            "activations",
            "--layer",
            "features.9",
        ],
        d.path(),
    );
    assert!(d
        .path()
        .join("pictures/vgg16_small_img_features.9_activations_grid.png")
        .is_file());
}

#[test]
fn show_prints_the_picture_in_the_terminal() {
    let d = tempfile::tempdir().unwrap();
    let img = image(d.path());
    let m = fixture("vgg16_small.safetensors");
    let out = run(
        &[
            "cam",
            m.to_str().unwrap(),
            &img,
            "--layer",
            "features.16",
            "-o",
            d.path().join("c.png").to_str().unwrap(),
            "--show",
        ],
        d.path(),
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.matches('▄').count() > 100,
        "no half-block picture on stdout:\n{text}"
    );
}

#[test]
fn written_files_get_the_mode_of_any_new_file() {
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::CommandExt;
    let d = tempfile::tempdir().unwrap();
    let img = image(d.path());
    let model = fixture("resnet50_small.safetensors");
    for (umask, mode) in [(0o022, 0o644), (0o027, 0o640)] {
        let out = d.path().join(format!("a{umask:o}.png"));
        let npy = d.path().join(format!("a{umask:o}.npy"));
        let status = unsafe {
            Command::new(env!("CARGO_BIN_EXE_convscope"))
                .args([
                    "activations",
                    model.to_str().unwrap(),
                    &img,
                    "--layer",
                    "conv1",
                ])
                .arg("-o")
                .arg(&out)
                .arg("--npy")
                .arg(&npy)
                .pre_exec(move || {
                    libc::umask(umask);
                    Ok(())
                })
                .status()
                .unwrap()
        };
        assert!(status.success());
        for f in [&out, &npy] {
            let got = std::fs::metadata(f).unwrap().permissions().mode() & 0o777;
            assert_eq!(got, mode, "{} under umask {umask:o}", f.display());
        }
    }
}

#[test]
fn default_names_carry_the_image_and_never_replace_an_earlier_output() {
    let d = tempfile::tempdir().unwrap();
    let m = fixture("vgg16_small.safetensors");
    let a = image(d.path());
    let b = d.path().join("other.png");
    std::fs::copy(&a, &b).unwrap();
    let cam = |img: &str| {
        run(
            &[
                "cam",
                m.to_str().unwrap(),
                img,
                "--layer",
                "features.16",
                "--class",
                "3",
            ],
            d.path(),
        );
    };
    cam(&a);
    cam(b.to_str().unwrap());
    let out = d.path().join("convscope-out");
    let mut names: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names.len(), 2, "{names:?}");
    assert!(
        names[0].contains("_img_") && names[1].contains("_other_"),
        "{names:?}"
    );
    // The same run again writes beside the first picture instead of over it, and --top's
    // ranked names are kept apart the same way.
    let first = out.join(&names[0]);
    let before = std::fs::metadata(&first).unwrap().modified().unwrap();
    cam(&a);
    let again = out.join(names[0].replace(".png", "-2.png"));
    assert!(
        again.is_file(),
        "{:?}",
        std::fs::read_dir(&out).unwrap().collect::<Vec<_>>()
    );
    assert_eq!(
        std::fs::metadata(&first).unwrap().modified().unwrap(),
        before
    );
    for _ in 0..2 {
        run(
            &[
                "cam",
                m.to_str().unwrap(),
                &a,
                "--layer",
                "features.16",
                "--top",
                "2",
            ],
            d.path(),
        );
    }
    let ranked = std::fs::read_dir(&out)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .contains("_top")
        })
        .count();
    assert_eq!(ranked, 4);
}

#[test]
fn utf8_labels_with_a_byte_order_mark_and_crlf_name_classes_and_outputs() {
    // The demo model with its labels rewritten as a Windows editor saves them, in Japanese.
    let d = tempfile::tempdir().unwrap();
    let demo = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/shapes");
    let folder = d.path().join("shapes");
    std::fs::create_dir(&folder).unwrap();
    for f in ["model.toml", "shapes.safetensors", "two_shapes.png"] {
        std::fs::copy(demo.join(f), folder.join(f)).unwrap();
    }
    let labels = ["円", "正方形", "三角形", "星", "十字", "輪"];
    std::fs::write(
        folder.join("labels.txt"),
        format!("\u{feff}{}\r\n", labels.join("\r\n")),
    )
    .unwrap();
    let m = folder.to_str().unwrap();
    let img = folder.join("two_shapes.png");
    let out = d.path().join("cam.png");
    let v = json(&run(
        &[
            "cam",
            m,
            img.to_str().unwrap(),
            "--class",
            "円",
            "-o",
            out.to_str().unwrap(),
            "--json",
        ],
        d.path(),
    ));
    assert_eq!(v["maps"][0]["class"], 0);
    assert_eq!(v["maps"][0]["label"], "円");
    // The label travels in the PNG as UTF-8 text.
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(&out).unwrap()));
    let reader = decoder.read_info().unwrap();
    let class = reader
        .info()
        .utf8_text
        .iter()
        .find(|t| t.keyword == "convscope:class")
        .unwrap()
        .get_text()
        .unwrap();
    assert_eq!(class, "0 円");
    // Without -o the default name takes the label too.
    run(&["cam", m, img.to_str().unwrap(), "--class", "4"], d.path());
    let names: Vec<String> = std::fs::read_dir(d.path().join("convscope-out"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(names.iter().any(|n| n.ends_with("十字.png")), "{names:?}");
}

#[test]
fn a_labels_file_beside_a_bare_checkpoint_names_its_classes() {
    let d = tempfile::tempdir().unwrap();
    let img = image(d.path());
    let m = d.path().join("finetuned.safetensors");
    std::fs::copy(fixture("vgg16_small.safetensors"), &m).unwrap();
    let names: Vec<String> = (0..10).map(|i| format!("kind{i}")).collect();
    std::fs::write(d.path().join("labels.txt"), names.join("\n")).unwrap();
    let label = |v: &serde_json::Value| v["top"][0]["label"].as_str().unwrap().to_string();
    let v = json(&run(
        &["predict", m.to_str().unwrap(), &img, "--json"],
        d.path(),
    ));
    assert!(label(&v).starts_with("kind"), "{v}");
    // `<stem>.labels.txt` is the checkpoint's own and wins over a shared labels.txt.
    let own: Vec<String> = (0..10).map(|i| format!("own{i}")).collect();
    std::fs::write(d.path().join("finetuned.labels.txt"), own.join("\n")).unwrap();
    let v = json(&run(
        &["predict", m.to_str().unwrap(), &img, "--json"],
        d.path(),
    ));
    assert!(label(&v).starts_with("own"), "{v}");
}

#[test]
fn saving_over_a_link_writes_its_target_and_keeps_the_file_mode() {
    use std::os::unix::fs::PermissionsExt;
    let d = tempfile::tempdir().unwrap();
    let img = image(d.path());
    let m = fixture("resnet50_small.safetensors");
    let target = d.path().join("kept").join("target.png");
    std::fs::create_dir(target.parent().unwrap()).unwrap();
    std::fs::write(&target, b"old").unwrap();
    std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o604)).unwrap();
    let link = d.path().join("link.png");
    std::os::unix::fs::symlink("kept/target.png", &link).unwrap();
    let npy = d.path().join("map.npy");
    std::os::unix::fs::symlink("kept/map_target.npy", &npy).unwrap(); // dangling until written
    run(
        &[
            "activations",
            m.to_str().unwrap(),
            &img,
            "--layer",
            "conv1",
            "-o",
            link.to_str().unwrap(),
            "--npy",
            npy.to_str().unwrap(),
        ],
        d.path(),
    );
    for (l, t) in [
        (&link, target.clone()),
        (&npy, d.path().join("kept/map_target.npy")),
    ] {
        assert!(
            std::fs::symlink_metadata(l)
                .unwrap()
                .file_type()
                .is_symlink(),
            "{l:?}"
        );
        assert!(
            std::fs::metadata(&t).unwrap().len() > 100,
            "{t:?} not written"
        );
    }
    assert!(image::open(&target).is_ok());
    let mode = std::fs::metadata(&target).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o604);
}

#[test]
fn ctrl_c_ends_a_headless_command_with_the_signal_status_and_no_leftovers() {
    let d = tempfile::tempdir().unwrap();
    let m = fixture("vgg16_small.safetensors");
    let mut child = Command::new(env!("CARGO_BIN_EXE_convscope"))
        .args([
            "filters",
            m.to_str().unwrap(),
            "--layer",
            "features.16",
            "--steps",
            "100000",
            "-o",
            "f.png",
        ])
        .current_dir(d.path())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(700));
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(128 + libc::SIGINT));
    let left: Vec<_> = std::fs::read_dir(d.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn a_one_logit_sigmoid_head_is_a_binary_classifier() {
    let d = tempfile::tempdir().unwrap();
    let img = image(d.path());
    // The VGG fixture cut to its first output: Keras' Dense(1, activation="sigmoid") in shape.
    let m = common::edited_vgg(d.path(), "binary.safetensors", |t| {
        for name in ["classifier.6.weight", "classifier.6.bias"] {
            let one = t[name].narrow(0, 0, 1).unwrap();
            t.insert(name.to_string(), one);
        }
    });
    std::fs::write(d.path().join("labels.txt"), "cat\ndog\n").unwrap();
    let m = m.to_str().unwrap();
    let v = json(&run(&["predict", m, &img, "--json"], d.path()));
    assert_eq!(v["head"], "sigmoid");
    let logits: Vec<f64> = serde_json::from_value(v["logits"].clone()).unwrap();
    assert_eq!(logits.len(), 2);
    assert_eq!(logits[0], -logits[1]);
    let l = logits[1];
    let p_dog = 1.0 / (1.0 + (-l).exp());
    let top = v["top"].as_array().unwrap();
    assert_eq!(top.len(), 2);
    for t in top {
        let p = t["probability"].as_f64().unwrap();
        let want = if t["label"] == "dog" {
            p_dog
        } else {
            1.0 - p_dog
        };
        assert!((p - want).abs() < 1e-6, "{t}");
    }
    // Each class has its own map: the negative class's is the negated logit's.
    let maps: Vec<Vec<f32>> = ["cat", "dog"]
        .iter()
        .map(|class| {
            let npy = d.path().join(format!("{class}.npy"));
            let out = d.path().join(format!("{class}.png"));
            run(
                &[
                    "cam",
                    m,
                    &img,
                    "--layer",
                    "features.16",
                    "--class",
                    class,
                    "--method",
                    "hirescam",
                    "-o",
                    out.to_str().unwrap(),
                    "--npy",
                    npy.to_str().unwrap(),
                ],
                d.path(),
            );
            candle_core::Tensor::read_npy(&npy)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1()
                .unwrap()
        })
        .collect();
    // HiResCAM is relu(sum of gradient * activation): the negated logit's map lies exactly
    // where the logit's is zero.
    assert!(maps.iter().all(|m| m.iter().any(|&v| v > 0.0)));
    assert!(
        maps[0]
            .iter()
            .zip(&maps[1])
            .all(|(a, b)| *a == 0.0 || *b == 0.0),
        "the two classes' maps overlap"
    );
}

#[test]
fn a_grayscale_model_reads_the_image_luma() {
    // The VGG fixture's first convolution summed over its input channels: on a gray image (the
    // same value in R, G and B) and with one mean and std for all, the 1-channel model computes
    // what the 3-channel one does.
    let d = tempfile::tempdir().unwrap();
    let gray = d.path().join("gray.png");
    image::RgbImage::from_fn(80, 64, |x, y| {
        let v = ((x * 3 + y * 2) % 256) as u8;
        image::Rgb([v, v, v])
    })
    .save(&gray)
    .unwrap();
    let card = |weights: &str| {
        format!("weights = \"{weights}\"\ninput_size = [64, 80]\nmean = [0.5, 0.5, 0.5]\nstd = [0.25, 0.25, 0.25]\n")
    };
    common::edited_vgg(d.path(), "rgb.safetensors", |_| {});
    common::edited_vgg(d.path(), "gray.safetensors", |t| {
        let w = t["features.0.weight"].sum_keepdim(1).unwrap();
        t.insert("features.0.weight".into(), w);
    });
    let logits = |weights: &str| -> Vec<f64> {
        let folder = d.path().join(weights.replace(".safetensors", ""));
        std::fs::create_dir_all(&folder).unwrap();
        std::fs::copy(d.path().join(weights), folder.join(weights)).unwrap();
        std::fs::write(folder.join("model.toml"), card(weights)).unwrap();
        let v = json(&run(
            &[
                "predict",
                folder.to_str().unwrap(),
                gray.to_str().unwrap(),
                "--json",
            ],
            d.path(),
        ));
        serde_json::from_value(v["logits"].clone()).unwrap()
    };
    let (rgb, one) = (logits("rgb.safetensors"), logits("gray.safetensors"));
    for (a, b) in rgb.iter().zip(&one) {
        assert!(
            (a - b).abs() < 1e-4 * a.abs().max(1.0),
            "{rgb:?} vs {one:?}"
        );
    }
    let info =
        String::from_utf8(run(&["info", d.path().join("gray").to_str().unwrap()], d.path()).stdout)
            .unwrap();
    assert!(info.contains("input 1x64x80"), "{info}");
}

#[test]
fn prefix_names_where_the_model_is_inside_a_checkpoint() {
    let d = tempfile::tempdir().unwrap();
    let img = image(d.path());
    let m = common::edited_vgg(d.path(), "wrapped.safetensors", |t| {
        let mut renamed: std::collections::HashMap<_, _> =
            t.drain().map(|(k, v)| (format!("net.{k}"), v)).collect();
        let extra =
            candle_core::Tensor::ones(3, candle_core::DType::F32, &candle_core::Device::Cpu);
        renamed.insert("criterion.weight".to_string(), extra.unwrap());
        *t = renamed;
    });
    let m = m.to_str().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_convscope"))
        .args(["predict", m, &img])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let v = json(&run(
        &["--prefix", "net.", "predict", m, &img, "--json"],
        d.path(),
    ));
    assert_eq!(v["logits"].as_array().unwrap().len(), 10);
    // Also before the subcommand is implied: `convscope --prefix net. MODEL` opens the explorer.
    let args = convscope::cli::with_default_subcommand(
        ["convscope", "--prefix", "net.", m]
            .map(String::from)
            .to_vec(),
    );
    assert_eq!(args, ["convscope", "explore", "--prefix", "net.", m]);
}

#[test]
fn aug_smooth_averages_six_variants_into_another_map() {
    // pytorch-grad-cam's aug_smooth on the demo model: flipped and brightness-scaled inputs,
    // each map mapped back and averaged; the input's own map is one of the six.
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let d = tempfile::tempdir().unwrap();
    let model = root.join("models/shapes");
    let img = root.join("models/shapes/two_shapes.png");
    let map = |extra: &[&str], name: &str| -> Vec<f32> {
        let npy = d.path().join(name);
        let png = d.path().join(format!("{name}.png"));
        let mut args = vec![
            "cam",
            model.to_str().unwrap(),
            img.to_str().unwrap(),
            "--layer",
            "relu4",
            "--npy",
            npy.to_str().unwrap(),
            "-o",
            png.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        run(&args, d.path());
        candle_core::Tensor::read_npy(&npy)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap()
    };
    let plain = map(&[], "plain.npy");
    let smooth = map(&["--aug-smooth"], "smooth.npy");
    assert_eq!(plain.len(), smooth.len());
    assert!(smooth.iter().all(|v| (0.0..=1.0).contains(v)));
    let moved = plain
        .iter()
        .zip(&smooth)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(moved > 0.01, "smoothing changed nothing ({moved})");
}

#[test]
fn folders_of_images_give_one_output_each_and_a_summary() {
    // Run from a folder whose config.toml-less defaults put pictures in ./convscope-out.
    let d = tempfile::tempdir().unwrap();
    let images = d.path().join("photos");
    std::fs::create_dir(&images).unwrap();
    for (name, shift) in [("a.png", 0u32), ("b.png", 40)] {
        image::RgbImage::from_fn(64, 48, |x, y| {
            image::Rgb([((x + shift) * 3) as u8, (y * 5) as u8, 90])
        })
        .save(images.join(name))
        .unwrap();
    }
    std::fs::write(images.join("notes.txt"), "not an image").unwrap();
    let m = fixture("resnet50_small.safetensors");
    let (m, folder) = (m.to_str().unwrap(), images.to_str().unwrap());
    let out = d.path().join("convscope-out");
    // CAMs: one overlay per readable image, named after it; the text file listed with why.
    let v = json(&run(&["cam", m, folder, "--json"], d.path()));
    assert_eq!(
        (v["images"].as_u64(), v["failed"].as_u64()),
        (Some(3), Some(1))
    );
    let results = v["results"].as_array().unwrap();
    assert!(results[2]["error"]
        .as_str()
        .unwrap()
        .contains("not an image"));
    for (row, stem) in results[..2].iter().zip(["a", "b"]) {
        let written = row["result"]["output"].as_str().unwrap();
        assert!(
            written.contains(&format!("resnet50_small_{stem}_layer4.2.relu3_gradcam_")),
            "{written}"
        );
        assert!(d.path().join(written).is_file(), "{written}");
        assert_eq!(row["result"]["map_size"], serde_json::json!([7, 7]));
    }
    let summary: serde_json::Value = serde_json::from_slice(
        &std::fs::read(out.join("resnet50_small_cam_summary.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(summary, v);
    // A second run never replaces the first's files.
    run(&["cam", m, folder], d.path());
    assert!(out.join("resnet50_small_cam_summary-2.json").is_file());
    // Predictions and activations over two named files.
    let a = images.join("a.png");
    let b = images.join("b.png");
    let (a, b) = (a.to_str().unwrap(), b.to_str().unwrap());
    let v = json(&run(
        &["predict", m, a, b, "--json", "--top", "2"],
        d.path(),
    ));
    assert_eq!(v["results"].as_array().unwrap().len(), 2);
    assert_eq!(
        v["results"][1]["result"]["top"].as_array().unwrap().len(),
        2
    );
    let v = json(&run(
        &["activations", m, a, b, "--layer", "layer1", "--json"],
        d.path(),
    ));
    assert_eq!(v["failed"], 0);
    assert!(out
        .join("resnet50_small_b_layer1.2.relu3_activations_grid.png")
        .is_file());
    // Single-file outputs are refused, and a folder of nothing readable fails.
    let fails = |args: &[&str], text: &str| {
        let o = Command::new(env!("CARGO_BIN_EXE_convscope"))
            .args(args)
            .current_dir(d.path())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(stderr.contains(text), "{args:?}: {stderr}");
    };
    fails(
        &["cam", m, folder, "--npy", "x.npy"],
        "--npy names one file",
    );
    let empty = d.path().join("texts");
    std::fs::create_dir(&empty).unwrap();
    std::fs::write(empty.join("x.txt"), "x").unwrap();
    fails(
        &["predict", m, empty.to_str().unwrap()],
        "no image could be processed",
    );
}

#[test]
fn eval_ranks_cam_methods_on_generated_shapes() {
    // From the repository root: the demo model and its shapes generator.
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let v = json(&run(
        &[
            "eval",
            "--shapes",
            "4",
            "--methods",
            "gradcam,eigencam",
            "--steps",
            "8",
            "--json",
        ],
        root,
    ));
    assert_eq!(v["layer"], "relu5");
    // Two single-shape images and two with two shapes: six maps per method.
    assert_eq!(v["maps_asked"], 6);
    let rows = v["methods"].as_array().unwrap();
    assert_eq!(rows.len(), 2);
    for row in rows {
        assert_eq!(
            row["maps"].as_u64().unwrap() + row["left_out"].as_u64().unwrap(),
            6
        );
        for key in ["deletion_auc", "insertion_auc"] {
            let auc = row[key].as_f64().unwrap();
            assert!((0.0..=1.0).contains(&auc), "{key} {auc}");
        }
        let pointing = row["pointing_game_percent"].as_f64().unwrap();
        assert!((0.0..=100.0).contains(&pointing));
        let road = row["road_combined"].as_f64().unwrap();
        assert!((-1.0..=1.0).contains(&road), "{road}");
    }
    // Grad-CAM on the demo model: its maps point at the objects and bring the class back sooner
    // than they take it away.
    let gradcam = &rows[0];
    assert_eq!(gradcam["method"], "gradcam");
    assert!(
        gradcam["pointing_game_percent"].as_f64().unwrap() >= 80.0,
        "{gradcam}"
    );
    assert!(
        gradcam["insertion_auc"].as_f64().unwrap() > gradcam["deletion_auc"].as_f64().unwrap(),
        "{gradcam}"
    );
    // Removing what Grad-CAM points at costs the class more than removing the rest.
    assert!(
        gradcam["road_most_relevant_first"].as_f64().unwrap()
            < gradcam["road_least_relevant_first"].as_f64().unwrap(),
        "{gradcam}"
    );
    // Nothing to evaluate on is one line.
    let o = Command::new(env!("CARGO_BIN_EXE_convscope"))
        .args(["eval", "models/shapes"])
        .current_dir(root)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        o.status.code() == Some(1) && stderr.contains("--shapes N"),
        "{stderr}"
    );
}
