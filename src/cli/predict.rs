//! `convscope predict`: the top classes for an image.

use anyhow::Result;
use serde_json::json;

use std::fmt::Write;

use super::{batch, emit, print_json, Loaded, Session, Subject};
use crate::model::{Model, Prediction};

/// The top classes as JSON: class, label, probability, logit.
fn top_json(
    model: &Model,
    prediction: &Prediction,
    top: &[(usize, f32)],
) -> Vec<serde_json::Value> {
    top.iter()
        .map(|&(i, p)| {
            json!({"class": i, "label": model.labels[i], "probability": p, "logit": prediction.logits[i]})
        })
        .collect()
}

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub subject: Subject,
    /// How many classes to list.
    #[arg(long, default_value_t = 5)]
    pub top: usize,
    /// Machine-readable output, with every logit.
    #[arg(long)]
    pub json: bool,
}

pub fn run(session: &Session, args: &Args) -> Result<()> {
    if let Some(paths) = session.batch(&args.subject)? {
        let model = session.model(args.subject.model.as_deref())?;
        model.require_head()?;
        let fit = session.fit(args.subject.fit);
        return batch::run(
            session,
            &paths,
            (&model.name, "predict"),
            args.json,
            |path, image| {
                let prediction = model.predict(&image, fit)?;
                let top = prediction.top(args.top);
                let listed: Vec<String> = top
                    .iter()
                    .map(|&(i, p)| format!("{} {:.1}%", model.labels[i], p * 100.0))
                    .collect();
                let line = format!("{}: {}", path.display(), listed.join(", "));
                Ok((json!({ "top": top_json(&model, &prediction, &top) }), line))
            },
        );
    }
    let Loaded {
        model,
        image_path,
        image,
        fit,
    } = session.load(&args.subject)?;
    let prediction = model.predict(&image, fit)?;
    let top = prediction.top(args.top);
    if args.json {
        return print_json(&json!({
            "model": model.name,
            "image": image_path,
            "top": top_json(&model, &prediction, &top),
            "head": model.head.map(|h| h.name()),
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
