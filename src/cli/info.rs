//! `convscope info`: the layer tree, or one layer's details.

use std::path::PathBuf;

use anyhow::Result;
use serde_json::json;

use std::fmt::Write;

use super::{emit, print_json, Session};
use crate::model::tree::layer_tree;
use crate::model::{Keep, Model};
use crate::views::info;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Model folder, model.toml or checkpoint (default: from config.toml).
    pub model: Option<PathBuf>,
    /// One layer's details instead of the tree (the explorer's Info view).
    #[arg(long)]
    pub layer: Option<String>,
    /// With --layer: an image to add the layer's activation statistics and the prediction.
    #[arg(long, requires = "layer")]
    pub image: Option<PathBuf>,
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
}

/// Output shape without the batch dimension, e.g. `64x56x56`.
pub fn shape_text(shape: &[usize]) -> String {
    shape[1..]
        .iter()
        .map(|d| d.to_string())
        .collect::<Vec<_>>()
        .join("x")
}

pub fn run(session: &Session, args: &Args) -> Result<()> {
    let model = session.model(args.model.as_deref())?;
    if let Some(layer) = &args.layer {
        let id = model.graph.find(layer)?;
        let pass = match &args.image {
            Some(path) => {
                let image = session.image(path)?;
                let acts = model.run(&image, session.fit(None), &Keep::All)?;
                let prediction = model.head.map(|_| model.prediction(&acts)).transpose()?;
                Some((acts, prediction))
            }
            None => None,
        };
        let text = info::layer_text(
            &model,
            id,
            pass.as_ref().map(|(acts, _)| acts),
            pass.as_ref().and_then(|(_, p)| p.as_ref()),
        )?;
        return emit(&text);
    }
    if args.json {
        return print_json(&info_json(&model));
    }
    let g = &model.graph;
    let (c, h, w) = g.input_size();
    let mut text = String::new();
    let outputs = match model.head {
        Some(_) => format!("{} classes", model.labels.len()),
        None => "no classification head (a backbone)".to_string(),
    };
    writeln!(
        text,
        "{} ({}): {} parameters, input {c}x{h}x{w}, {outputs}",
        model.name,
        model.arch,
        g.parameter_count(),
    )?;
    let tree = layer_tree(g);
    let mut rows = Vec::new();
    tree.walk(&mut |n, depth| {
        let node = g.node(n.output);
        let kind = if n.is_node { node.op.kind() } else { "module" };
        let attrs = if n.is_node {
            node.op.attributes()
        } else {
            String::new()
        };
        rows.push((
            format!("{}{}", "  ".repeat(depth), n.label),
            kind,
            shape_text(&node.shape),
            n.parameters,
            attrs,
        ));
    });
    let width = rows.iter().map(|r| r.0.len()).max().unwrap_or(0);
    for (name, kind, shape, params, attrs) in rows {
        writeln!(
            text,
            "{name:width$}  {kind:<15} {shape:<12} {params:>11}  {attrs}"
        )?;
    }
    emit(&text)
}

fn info_json(model: &Model) -> serde_json::Value {
    let g = &model.graph;
    let nodes: Vec<_> = g
        .nodes()
        .iter()
        .map(|n| {
            json!({
                "name": n.name,
                "op": n.op.kind(),
                "attributes": n.op.attributes(),
                "inputs": n.inputs.iter().map(|&i| g.node(i).name.clone()).collect::<Vec<_>>(),
                "shape": n.shape[1..],
                "parameters": n.op.parameter_count(),
            })
        })
        .collect();
    json!({
        "model": model.name,
        "architecture": model.arch,
        "parameters": g.parameter_count(),
        "input": [g.input_size().0, g.input_size().1, g.input_size().2],
        "classes": model.labels.len(),
        "nodes": nodes,
    })
}
