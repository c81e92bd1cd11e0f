//! `convscope activations`: a layer's channels as a grid of maps.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use serde_json::json;

use super::filters::parse_channels;
use super::info::shape_text;
use std::fmt::Write;

use super::{
    batch, distinct_outputs, emit, image_stem, print_json, show, view_path, Loaded, Session,
    Subject, Written,
};
use crate::model::{Keep, NodeId};
use crate::views::activations::{render, Channels, Request};
use crate::viz::activations::{ChannelNorm, LayerOutput};
use crate::viz::colormap::Colormap;
use crate::viz::render::{save_npy, save_png};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub subject: Subject,
    /// Layer or module name, e.g. features.28 or layer4 (see `convscope info`).
    #[arg(long)]
    pub layer: String,
    /// Show one channel, enlarged, instead of the grid.
    #[arg(long, conflicts_with = "channels")]
    pub channel: Option<usize>,
    /// A range of channels for the grid, `A..B` (end excluded; default: all).
    #[arg(long, value_name = "A..B")]
    pub channels: Option<String>,
    /// Output PNG (default: a descriptive name in the output folder).
    #[arg(short, long)]
    pub output: Option<PathBuf>,
    #[arg(long, value_enum)]
    pub colormap: Option<Colormap>,
    /// Per-channel normalisation.
    #[arg(long, value_enum)]
    pub norm: Option<ChannelNorm>,
    /// Maps per grid row.
    #[arg(long, default_value_t = 16)]
    pub per_row: usize,
    /// Also write the layer's raw output (C, H, W) as a NumPy .npy file.
    #[arg(long, value_name = "FILE")]
    pub npy: Option<PathBuf>,
    /// Machine-readable summary on stdout.
    #[arg(long)]
    pub json: bool,
    /// Also print the picture in the terminal.
    #[arg(long)]
    pub show: bool,
}

/// The request `args` make for a layer of `count` channels.
fn request(session: &Session, args: &Args, layer: NodeId, count: usize) -> Result<Request> {
    let channels = match (args.channel, &args.channels) {
        (Some(c), _) => Channels::One(c),
        (None, Some(spec)) => {
            let list = parse_channels(spec, count)?;
            let (start, end) = (list[0], list[list.len() - 1] + 1);
            if list != (start..end).collect::<Vec<_>>() {
                bail!("--channels for activations is one range, A..B");
            }
            Channels::Range(start, end)
        }
        (None, None) => Channels::All,
    };
    Ok(Request {
        layer,
        channels,
        colormap: args.colormap.unwrap_or(session.config.colormap),
        norm: args.norm.unwrap_or(session.config.norm),
        per_row: args.per_row,
    })
}

/// The activations of each image of a batch, each written under a name of its own.
fn run_batch(session: &Session, args: &Args, paths: &[PathBuf]) -> Result<()> {
    batch::refuse_single_outputs(&[("-o", args.output.is_some()), ("--npy", args.npy.is_some())])?;
    let model = session.model(args.subject.model.as_deref())?;
    let node = model.graph.find(&args.layer)?;
    let request = request(session, args, node, model.graph.node(node).shape[1])?;
    let fit = session.fit(args.subject.fit);
    let layer_name = &model.graph.node(node).name;
    batch::run(
        session,
        paths,
        (&model.name, "activations"),
        args.json,
        |path, image| {
            let acts = model.run(&image, fit, &Keep::Only(vec![node]))?;
            let rendered = render(&model, &acts, &request)?;
            let names = (model.name.as_str(), image_stem(path), layer_name.as_str());
            let out = view_path(session, None, &rendered, (names.0, &names.1, names.2))?;
            save_png(&rendered.picture, &out, &rendered.chunks)?;
            let tensor = acts.get(node).context("the layer's output was not kept")?;
            let row = json!({
                "layer": layer_name,
                "output": out,
                "channels": LayerOutput::from_tensor(tensor)?.channel_stats(),
            });
            Ok((
                row,
                format!(
                    "{}: {} -> {}",
                    path.display(),
                    rendered.caption,
                    out.display()
                ),
            ))
        },
    )
}

pub fn run(session: &Session, args: &Args) -> Result<()> {
    if let Some(paths) = session.batch(&args.subject)? {
        return run_batch(session, args, &paths);
    }
    let Loaded {
        model,
        image,
        fit,
        image_path,
    } = session.load(&args.subject)?;
    distinct_outputs(&[args.output.as_ref(), args.npy.as_ref()])?;
    let node = model.graph.find(&args.layer)?;
    let acts = model.run(&image, fit, &Keep::Only(vec![node]))?;
    let request = request(session, args, node, model.graph.node(node).shape[1])?;
    let rendered = render(&model, &acts, &request)?;
    let tensor = acts.get(node).context("the layer's output was not kept")?;
    let layer_name = &model.graph.node(node).name;
    let image_name = image_stem(&image_path);
    let path = view_path(
        session,
        args.output.as_ref(),
        &rendered,
        (&model.name, &image_name, layer_name),
    )?;
    let mut written = Written::default();
    written.save(&path, || {
        save_png(&rendered.picture, &path, &rendered.chunks)
    })?;
    if args.show {
        show(&rendered.picture)?;
    }
    if let Some(npy) = &args.npy {
        written.save(npy, || save_npy(&tensor.get(0)?, npy))?;
    }
    let shape = &model.graph.node(node).shape;
    if args.json {
        return print_json(&json!({
            "model": model.name,
            "layer": layer_name,
            "shape": shape[1..],
            "output": path,
            "channels": LayerOutput::from_tensor(tensor)?.channel_stats(),
        }));
    }
    let mut text = String::new();
    writeln!(
        text,
        "{}: {layer_name} ({}, {}) -> {}",
        model.name,
        model.graph.node(node).op.kind(),
        shape_text(shape),
        path.display()
    )?;
    emit(&text)
}
