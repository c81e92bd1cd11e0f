//! `convscope cam`: class activation maps over the input image.

use std::fmt::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use candle_core::{Device, Tensor};
use serde_json::json;

use super::{
    batch, default_output, distinct_outputs, emit, image_stem, print_json, show, view_path, Loaded,
    Session, Subject, Written,
};
use crate::model::Model;
use crate::views::compare::{self, CompareBy};
use crate::views::{cam, file_safe};
use crate::viz::cam::{default_layer, top_classes, CamMap, CamMethod, CamSession};
use crate::viz::colormap::Colormap;
use crate::viz::overlay::heatmap;
use crate::viz::render::{save_npy, save_png};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub subject: Subject,
    /// Target layer (default: the last one with a spatial output larger than 1x1).
    #[arg(long)]
    pub layer: Option<String>,
    /// Target class: an index or a label (default: the top prediction).
    #[arg(long, allow_hyphen_values = true)]
    pub class: Option<String>,
    #[arg(long, value_enum, default_value_t = CamMethod::Gradcam)]
    pub method: CamMethod,
    /// Write one overlay for each of the top K classes (with --compare classes: K panels).
    #[arg(long, value_name = "K")]
    pub top: Option<usize>,
    /// One grid of captioned panels: the top classes (--top K, 4 by default) with --method, or
    /// every method for --class (or the top class).
    #[arg(long, value_enum, conflicts_with_all = ["heatmap", "npy", "aug_smooth"])]
    pub compare: Option<CompareBy>,
    /// Output PNG: the overlay at the image's own resolution (default: a descriptive name in the
    /// output folder). With --top, the class is added to the name.
    #[arg(short, long)]
    pub output: Option<PathBuf>,
    /// Also write the heatmap alone, at the network's input size.
    #[arg(long, value_name = "FILE")]
    pub heatmap: Option<PathBuf>,
    /// Weight of the heatmap in the overlay (pytorch-grad-cam: 0.5; Chollet: 0.4).
    #[arg(long, default_value_t = cam::DEFAULT_ALPHA)]
    pub alpha: f32,
    #[arg(long, value_enum, default_value_t = Colormap::Jet)]
    pub colormap: Colormap,
    /// Average the maps of flipped and brightness-scaled inputs (pytorch-grad-cam's aug_smooth).
    #[arg(long)]
    pub aug_smooth: bool,
    /// Write the normalised map at the layer's resolution (before upsampling) as .npy.
    #[arg(long, value_name = "FILE")]
    pub npy: Option<PathBuf>,
    /// Machine-readable summary on stdout.
    #[arg(long)]
    pub json: bool,
    /// Also print each overlay in the terminal.
    #[arg(long)]
    pub show: bool,
}

/// The CAM the command line asks for, of `class` at `layer`.
fn cam_request(args: &Args, layer: usize, class: usize) -> cam::Request {
    cam::Request {
        layer,
        method: args.method,
        class,
        colormap: args.colormap,
        alpha: args.alpha,
        aug_smooth: args.aug_smooth,
    }
}

/// `--compare`: one grid of the top classes' or of every method's maps.
fn run_compare(
    session: &Session,
    args: &Args,
    (model, image_path, image, input): (&Model, &Path, &image::RgbImage, &Tensor),
    cams: &mut CamSession,
    layer: usize,
    by: CompareBy,
) -> Result<()> {
    let class = match &args.class {
        Some(c) => model.class_index(c)?,
        None => cams.top_class(),
    };
    let request = compare::Request {
        by,
        classes: args.top.unwrap_or(compare::DEFAULT_CLASSES),
        cam: cam_request(args, layer, class),
    };
    let rendered = compare::render(model, image, input, cams, &request)?;
    let layer_name = &model.graph.node(layer).name;
    let path = view_path(
        session,
        args.output.as_ref(),
        &rendered,
        (&model.name, &image_stem(image_path), layer_name),
    )?;
    save_png(&rendered.picture, &path, &rendered.chunks)?;
    if args.show {
        show(&rendered.picture)?;
    }
    if args.json {
        return print_json(&json!({
            "model": model.name,
            "image": image_path,
            "layer": layer_name,
            "compare": format!("{by:?}").to_lowercase(),
            "caption": rendered.caption,
            "output": path,
        }));
    }
    emit(&format!(
        "{}: {} -> {}\n",
        model.name,
        rendered.caption,
        path.display()
    ))
}

/// The CAM of each image of a batch (its top class, or `--class`), each written under a name
/// of its own.
fn run_batch(session: &Session, args: &Args, paths: &[PathBuf]) -> Result<()> {
    batch::refuse_single_outputs(&[
        ("-o", args.output.is_some()),
        ("--heatmap", args.heatmap.is_some()),
        ("--npy", args.npy.is_some()),
        ("--top", args.top.is_some()),
    ])?;
    let model = session.model(args.subject.model.as_deref())?;
    model.require_head()?;
    let layer = match &args.layer {
        Some(name) => model.graph.find(name)?,
        None => default_layer(&model).context("the model has no layer with a spatial output")?,
    };
    let layer_name = model.graph.node(layer).name.clone();
    let class = args
        .class
        .as_deref()
        .map(|c| model.class_index(c))
        .transpose()?;
    let fit = session.fit(args.subject.fit);
    batch::run(
        session,
        paths,
        (&model.name, "cam"),
        args.json,
        |path, image| {
            let input = model.input_tensor(&image, fit)?;
            let mut cams = CamSession::new(&model, &input, layer)?;
            let class = class.unwrap_or_else(|| cams.top_class());
            let request = cam_request(args, layer, class);
            let (rendered, map) = cam::render(&model, &image, &input, &mut cams, &request)?;
            let image_name = image_stem(path);
            let out = view_path(
                session,
                None,
                &rendered,
                (&model.name, &image_name, &layer_name),
            )?;
            save_png(&rendered.picture, &out, &rendered.chunks)?;
            let line = format!(
                "{}: {} -> {}",
                path.display(),
                rendered.caption,
                out.display()
            );
            Ok((map_summary(&model, &map, &layer_name, &out), line))
        },
    )
}

/// A CAM's summary: class, score, where it is strongest (at the layer's resolution), its mean.
fn map_summary(model: &Model, map: &CamMap, layer: &str, output: &Path) -> serde_json::Value {
    let (h, w) = map.layer_size;
    let peak = map
        .layer_map
        .iter()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(b.1))
        .map_or(0, |(i, _)| i);
    let mean = map.layer_map.iter().sum::<f32>() / map.layer_map.len().max(1) as f32;
    json!({
        "layer": layer,
        "method": map.method.key(),
        "class": map.class,
        "label": model.labels[map.class],
        "score": map.score,
        "map_size": [h, w],
        "peak": [peak / w.max(1), peak % w.max(1)],
        "mean": mean,
        "output": output,
    })
}

/// `out.png` -> `out_2_tabby.png` for the rank-2 class.
fn ranked_path(base: &Path, rank: usize, label: &str) -> PathBuf {
    let stem = base
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    base.with_file_name(format!("{stem}_{rank}_{}.png", file_safe(label)))
}

pub fn run(session: &Session, args: &Args) -> Result<()> {
    if !(0.0..=1.0).contains(&args.alpha) {
        bail!("--alpha must be between 0 and 1");
    }
    distinct_outputs(&[
        args.output.as_ref(),
        args.heatmap.as_ref(),
        args.npy.as_ref(),
    ])?;
    if let Some(paths) = session.batch(&args.subject)? {
        return run_batch(session, args, &paths);
    }
    let Loaded {
        model,
        image_path,
        image,
        fit,
    } = session.load(&args.subject)?;
    let layer = match &args.layer {
        Some(name) => model.graph.find(name)?,
        None => default_layer(&model).context("the model has no layer with a spatial output")?,
    };
    let layer_name = model.graph.node(layer).name.clone();
    let input = model.input_tensor(&image, fit)?;
    let mut cams = CamSession::new(&model, &input, layer)?;
    if let Some(by) = args.compare {
        return run_compare(
            session,
            args,
            (&model, &image_path, &image, &input),
            &mut cams,
            layer,
            by,
        );
    }
    let classes: Vec<usize> = match (&args.class, args.top) {
        (Some(_), Some(_)) => bail!("give --class or --top, not both"),
        (Some(c), None) => vec![model.class_index(c)?],
        (None, Some(k)) => top_classes(cams.logits(), k.max(1)),
        (None, None) => vec![cams.top_class()],
    };
    let request = |class| cam_request(args, layer, class);
    let base = match &args.output {
        Some(p) => p.clone(),
        None => default_output(
            session,
            &format!(
                "{}_{}_{}_{}_{}",
                model.name,
                image_stem(&image_path),
                layer_name,
                args.method.key(),
                if args.top.is_some() {
                    "top".to_string()
                } else {
                    file_safe(&model.labels[classes[0]])
                }
            ),
            |base| match args.top {
                Some(_) => classes
                    .iter()
                    .enumerate()
                    .map(|(rank, &c)| ranked_path(base, rank + 1, &model.labels[c]))
                    .collect(),
                None => vec![base.to_path_buf()],
            },
        )?,
    };
    let mut text = String::new();
    let mut results = Vec::new();
    let mut written = Written::default();
    for (rank, &class) in classes.iter().enumerate() {
        let (rendered, map) = cam::render(&model, &image, &input, &mut cams, &request(class))?;
        let path = if args.top.is_some() {
            ranked_path(&base, rank + 1, &model.labels[class])
        } else {
            base.clone()
        };
        written.save(&path, || {
            save_png(&rendered.picture, &path, &rendered.chunks)
        })?;
        if args.show {
            show(&rendered.picture)?;
        }
        if rank == 0 {
            if let Some(h) = &args.heatmap {
                let picture = heatmap(&map.map, map.size, args.colormap);
                written.save(h, || save_png(&picture, h, &rendered.chunks))?;
            }
            if let Some(npy) = &args.npy {
                let (h, w) = map.layer_size;
                let values = Tensor::from_vec(map.layer_map.clone(), (h, w), &Device::Cpu)?;
                written.save(npy, || save_npy(&values, npy))?;
            }
        }
        writeln!(
            text,
            "{} {} for '{}' (class {class}, logit {:.3}) at {layer_name} ({}x{}) -> {}",
            model.name,
            args.method.title(),
            model.labels[class],
            map.score,
            map.layer_size.0,
            map.layer_size.1,
            path.display()
        )?;
        results.push(json!({
            "class": class,
            "label": model.labels[class],
            "score": map.score,
            "output": path,
        }));
    }
    if args.json {
        let shape = &model.graph.node(layer).shape;
        return print_json(&json!({
            "model": model.name,
            "image": image_path,
            "layer": layer_name,
            "method": args.method.key(),
            "map_size": [shape[2], shape[3]],
            "maps": results,
        }));
    }
    emit(&text)
}
