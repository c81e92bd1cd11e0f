//! `convscope predict`: the top classes for an image.

use std::path::PathBuf;

use anyhow::Result;
use serde_json::json;

use std::fmt::Write;

use super::{emit, print_json, Session};
use crate::input::Fit;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Model folder, model.toml or checkpoint (default: from config.toml).
    pub model: Option<PathBuf>,
    /// Image file (default: from config.toml).
    pub image: Option<PathBuf>,
    /// How many classes to list.
    #[arg(long, default_value_t = 5)]
    pub top: usize,
    /// How the image is fitted to the model's input.
    #[arg(long = "crop", value_enum)]
    pub fit: Option<Fit>,
    /// Machine-readable output, with every logit.
    #[arg(long)]
    pub json: bool,
}

pub fn run(session: &Session, args: &Args) -> Result<()> {
    let model = session.model(args.model.as_deref())?;
    let image_path = session.image_path(args.image.as_deref());
    let image = session.image(image_path)?;
    let prediction = model.predict(&image, session.fit(args.fit))?;
    let top = prediction.top(args.top);
    if args.json {
        let top: Vec<_> = top
            .iter()
            .map(|&(i, p)| json!({"class": i, "label": model.labels[i], "probability": p, "logit": prediction.logits[i]}))
            .collect();
        return print_json(&json!({
            "model": model.name,
            "image": image_path,
            "top": top,
            "logits": prediction.logits,
        }));
    }
    let mut text = String::new();
    writeln!(text, "{} on {}", model.name, image_path.display())?;
    let width = top
        .iter()
        .map(|&(i, _)| model.labels[i].len())
        .max()
        .unwrap_or(0);
    for (rank, &(i, p)) in top.iter().enumerate() {
        writeln!(
            text,
            "{:>3}. {:<width$}  {:>6.2}%  (class {i}, logit {:.3})",
            rank + 1,
            model.labels[i],
            p * 100.0,
            prediction.logits[i]
        )?;
    }
    emit(&text)
}
