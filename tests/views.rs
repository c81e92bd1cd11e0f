//! One view layer for both front ends: the same request gives the same picture, byte for byte,
//! from the explorer's worker and from the command line (activations, CAMs, CAMs compared side
//! by side, filter patterns),
//! and the explorer's page of a wider layer is the command line's `--channels` grid.

mod common;

use std::path::{Path, PathBuf};
use std::sync::mpsc::channel;
use std::sync::Arc;

use candle_core::Device;
use convscope::config::Config;
use convscope::model::Model;
use convscope::tui::view::{Mode, ViewContent, ViewKey};
use convscope::tui::worker::{spawn, Job, Reply};
use convscope::views::compare::CompareBy;
use convscope::viz::cam::CamMethod;
use convscope::viz::colormap::Colormap;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// The views the explorer's worker makes for `keys` (of image 1, the demo image).
fn explorer_views(model: Arc<Model>, keys: Vec<ViewKey>) -> Vec<ViewContent> {
    let config = Config::load(Some(&Path::new(ROOT).join("config.toml"))).unwrap();
    let (jobs, job_rx) = channel();
    let (reply_tx, replies) = channel();
    let worker = spawn(model, config, job_rx, reply_tx);
    let image = Path::new(ROOT).join("models/shapes/two_shapes.png");
    jobs.send(Job::Open { id: 1, path: image }).unwrap();
    // As the explorer does: views are asked for once the image is open (a view queued behind
    // an open is dropped, the explorer asks again).
    match replies.recv().unwrap() {
        Reply::Opened { result, .. } => {
            result.unwrap();
        }
        _ => panic!("the open's reply first"),
    }
    let mut views = Vec::new();
    for key in keys {
        jobs.send(Job::View(key)).unwrap();
        loop {
            match replies.recv().unwrap() {
                Reply::View { result, .. } => {
                    views.push(result.unwrap());
                    break;
                }
                Reply::Opened { .. } => panic!("one image only"),
                Reply::Progress { .. } => {}
            }
        }
    }
    drop(jobs);
    worker.join().unwrap();
    views
}

/// The pictures of `views`.
fn pictures(views: Vec<ViewContent>) -> Vec<image::RgbImage> {
    views
        .into_iter()
        .map(|v| match v {
            ViewContent::Picture(rendered) => rendered.picture,
            ViewContent::Text(t) => panic!("a text view: {t}"),
        })
        .collect()
}

/// The picture `convscope ARGS -o FILE` writes, run from the repository root.
fn command_line_picture(args: &[&str], dir: &Path, name: &str) -> image::RgbImage {
    let out: PathBuf = dir.join(name);
    let mut full: Vec<&str> = args.to_vec();
    full.extend(["-o", out.to_str().unwrap()]);
    common::convscope_ok(&full, Some(Path::new(ROOT)));
    image::open(&out).unwrap().to_rgb8()
}

#[test]
fn the_explorer_and_the_command_line_draw_the_same_pictures() {
    let model =
        Arc::new(Model::open(&Path::new(ROOT).join("models/shapes"), None, &Device::Cpu).unwrap());
    let node = |name: &str| model.graph.find(name).unwrap();
    let key = |layer: &str, mode, page, colormap| ViewKey {
        image: 1,
        node: node(layer),
        mode,
        page,
        channel: None,
        class: None,
        method: CamMethod::Gradcam,
        compare: None,
        colormap,
    };
    let compared = |by| ViewKey {
        compare: Some(by),
        ..key("relu5", Mode::Cam, 0, Colormap::Jet)
    };
    let keys = vec![
        // conv3 has 64 channels: the explorer's first page is all of them.
        key("conv3", Mode::Activations, 0, Colormap::Viridis),
        // conv5 has 128: its second page is channels 64..128.
        key("conv5", Mode::Activations, 1, Colormap::Viridis),
        key("relu5", Mode::Cam, 0, Colormap::Jet),
        key("relu5", Mode::Cam, 0, Colormap::Viridis),
        // The first page of filter patterns: 16 channels.
        key("conv2", Mode::Filters, 0, Colormap::Viridis),
        // CAMs side by side: the top four classes, every method.
        compared(CompareBy::Classes),
        compared(CompareBy::Methods),
    ];
    let explorer = pictures(explorer_views(model.clone(), keys));
    let d = tempfile::tempdir().unwrap();
    let img = "models/shapes/two_shapes.png";
    let m = "models/shapes";
    let cli = [
        command_line_picture(
            &["activations", m, img, "--layer", "conv3", "--per-row", "8"],
            d.path(),
            "a.png",
        ),
        command_line_picture(
            &[
                "activations",
                m,
                img,
                "--layer",
                "conv5",
                "--per-row",
                "8",
                "--channels",
                "64..128",
            ],
            d.path(),
            "b.png",
        ),
        command_line_picture(&["cam", m, img, "--layer", "relu5"], d.path(), "c.png"),
        command_line_picture(
            &["cam", m, img, "--layer", "relu5", "--colormap", "viridis"],
            d.path(),
            "d.png",
        ),
        command_line_picture(
            &["filters", m, "--layer", "conv2", "--channels", "0..16"],
            d.path(),
            "e.png",
        ),
        command_line_picture(
            &["cam", m, img, "--layer", "relu5", "--compare", "classes"],
            d.path(),
            "f.png",
        ),
        command_line_picture(
            &["cam", m, img, "--layer", "relu5", "--compare", "methods"],
            d.path(),
            "g.png",
        ),
    ];
    assert_eq!(explorer.len(), cli.len());
    for (i, (ours, theirs)) in explorer.iter().zip(&cli).enumerate() {
        assert_eq!(ours.dimensions(), theirs.dimensions(), "view {i}");
        assert!(
            ours.as_raw() == theirs.as_raw(),
            "view {i}: pictures differ"
        );
    }
    // The two CAM colormaps are two pictures (the explorer can show viridis CAMs).
    assert_ne!(explorer[2].as_raw(), explorer[3].as_raw());
}

#[test]
fn the_explorer_info_view_is_info_with_a_layer_and_the_image() {
    let model =
        Arc::new(Model::open(&Path::new(ROOT).join("models/shapes"), None, &Device::Cpu).unwrap());
    let key = ViewKey {
        image: 1,
        node: model.graph.find("conv3").unwrap(),
        mode: Mode::Info,
        page: 0,
        channel: None,
        class: None,
        method: CamMethod::Gradcam,
        compare: None,
        colormap: Colormap::Viridis,
    };
    let explorer = match explorer_views(model, vec![key]).remove(0) {
        ViewContent::Text(t) => t,
        ViewContent::Picture(_) => panic!("a picture for Info"),
    };
    let out = common::convscope_ok(
        &[
            "info",
            "models/shapes",
            "--layer",
            "conv3",
            "--image",
            "models/shapes/two_shapes.png",
        ],
        Some(Path::new(ROOT)),
    );
    let cli = String::from_utf8(out.stdout).unwrap();
    assert!(explorer.contains("activations on this image") && explorer.contains("prediction"));
    assert_eq!(cli.trim_end(), explorer.trim_end());
}
