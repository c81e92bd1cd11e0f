//! `convscope filters`: filter patterns of a layer's channels, as a grid.

use std::fmt::Write;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;

use anyhow::{bail, Context, Result};
use serde_json::json;

use super::{emit, print_json, show, view_path, Session};
use crate::views::filters;
use crate::viz::filters::{Objective, Recipe};
use crate::viz::render::save_png;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Model folder, model.toml or checkpoint (default: from config.toml).
    pub model: Option<PathBuf>,
    /// Layer or module name (see `convscope info`).
    #[arg(long)]
    pub layer: String,
    /// Channels: `0..64` (end excluded), `5`, or a list such as `0,3,8..12` (default: all).
    #[arg(long)]
    pub channels: Option<String>,
    #[arg(long, value_enum, default_value_t = Recipe::Classic)]
    pub recipe: Recipe,
    /// What is maximised (default: a channel's mean for a layer of maps, a unit of a vector).
    #[arg(long, value_enum)]
    pub objective: Option<Objective>,
    /// Optimisation steps (default: 40 classic, 512 lucid).
    #[arg(long)]
    pub steps: Option<usize>,
    /// Side of the optimised image in pixels (default: 150 classic, 128 lucid, no larger than
    /// the network's input and at least 64).
    #[arg(long)]
    pub size: Option<usize>,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Memory one batch may use, in MiB.
    #[arg(long, value_name = "MIB")]
    pub budget: Option<usize>,
    /// Output PNG (default: a descriptive name in the output folder).
    #[arg(short, long)]
    pub output: Option<PathBuf>,
    /// Machine-readable summary on stdout.
    #[arg(long)]
    pub json: bool,
    /// Also print the picture in the terminal.
    #[arg(long)]
    pub show: bool,
}

/// Parses `0..64`, `5`, `0,3,8..12`.
pub fn parse_channels(spec: &str, count: usize) -> Result<Vec<usize>> {
    let mut out = Vec::new();
    for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let bad =
            || format!("cannot read channels '{part}': use N, A..B or a comma-separated list");
        match part.split_once("..") {
            Some((a, b)) => {
                let a: usize = a.trim().parse().with_context(bad)?;
                let b: usize = b.trim().parse().with_context(bad)?;
                if b > count {
                    bail!("channels {a}..{b} reach past the layer's {count} channels (0..{count})");
                }
                out.extend(a..b);
            }
            None => out.push(part.parse().with_context(bad)?),
        }
    }
    if out.is_empty() {
        bail!("no channels selected by '{spec}'");
    }
    if let Some(c) = out.iter().find(|&&c| c >= count) {
        bail!("channel {c} is out of range: the layer has {count} channels");
    }
    Ok(out)
}

pub fn run(session: &Session, args: &Args) -> Result<()> {
    let model = session.model(args.model.as_deref())?;
    let layer = model.graph.find(&args.layer)?;
    let layer_name = model.graph.node(layer).name.clone();
    let count = model.graph.node(layer).shape[1];
    let channels = match &args.channels {
        Some(spec) => parse_channels(spec, count)?,
        None => (0..count).collect(),
    };
    let mut settings = filters::default_settings(&model, layer, args.recipe);
    if let Some(objective) = args.objective {
        settings.objective = objective;
    }
    settings.seed = args.seed;
    if let Some(s) = args.steps {
        settings.steps = s;
    }
    if let Some(s) = args.size {
        settings.size = s;
    }
    if let Some(mib) = args.budget {
        settings.budget_bytes = mib << 20;
    }
    let bar = indicatif::ProgressBar::new(settings.steps as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{msg} [{bar:30}] {pos}/{len} steps, {elapsed} (eta {eta})",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    bar.set_message(format!("{layer_name}: {} channels", channels.len()));
    let started = std::time::Instant::now();
    let cancel = AtomicBool::new(false);
    let request = filters::Request {
        layer,
        channels,
        settings,
    };
    let result = filters::render(
        &model,
        &request,
        &mut |done, total| {
            bar.set_length(total as u64);
            bar.set_position(done as u64);
        },
        &cancel,
    );
    bar.finish_and_clear();
    let (rendered, patterns) = result?;
    let settings = &request.settings;
    let seconds = started.elapsed().as_secs_f64();
    let path = view_path(
        session,
        args.output.as_ref(),
        &rendered,
        (&model.name, "", &layer_name),
    )?;
    save_png(&rendered.picture, &path, &rendered.chunks)?;
    if args.show {
        show(&rendered.picture)?;
    }
    if args.json {
        let per: Vec<_> = patterns
            .iter()
            .map(|p| json!({"channel": p.channel, "start": p.start, "end": p.end}))
            .collect();
        return print_json(&json!({
            "model": model.name,
            "layer": layer_name,
            "recipe": format!("{:?}", args.recipe).to_lowercase(),
            "steps": settings.steps,
            "size": settings.size,
            "seconds": seconds,
            "output": path,
            "channels": per,
        }));
    }
    let mut text = String::new();
    writeln!(
        text,
        "{}: {} patterns of {layer_name} in {seconds:.1} s -> {}",
        model.name,
        patterns.len(),
        path.display()
    )?;
    emit(&text)
}
