//! `convscope eval`: how good each CAM method's maps are on one model, as one table: the
//! confidence change of the image multiplied by the map, deletion and insertion, ROAD, and on
//! generated shapes the pointing game.

use std::fmt::Write;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use serde_json::json;

use super::{emit, print_json, Session};
use crate::input::Fit;
use crate::metrics::confidence::ConfidenceChange;
use crate::metrics::deletion::Curves;
use crate::metrics::pointing;
use crate::metrics::road::{Road, PERCENTILES};
use crate::shapes::{BoundingBox, Generator};
use crate::viz::cam::{default_layer, CamMethod, CamSession};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Model folder, model.toml or checkpoint (default: from config.toml).
    pub model: Option<PathBuf>,
    /// Images or folders of them, each explained for its top class.
    pub images: Vec<PathBuf>,
    /// N generated images of the demo model's shapes (half with one shape, half with two), each
    /// shape explained for its class, with the pointing game against its box.
    #[arg(long, value_name = "N")]
    pub shapes: Option<usize>,
    /// Seed of the generated shapes.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Target layer (default: the model's CAM layer).
    #[arg(long)]
    pub layer: Option<String>,
    /// Methods to compare, comma-separated (default: all; those that do not apply are left
    /// out).
    #[arg(long, value_enum, value_delimiter = ',')]
    pub methods: Vec<CamMethod>,
    /// Points of the deletion and insertion curves, less one.
    #[arg(long, default_value_t = 16)]
    pub steps: usize,
    #[arg(long = "crop", value_enum)]
    pub fit: Option<Fit>,
    /// Machine-readable table on stdout.
    #[arg(long)]
    pub json: bool,
}

/// One explained map's target: the image, its class, and the object's box when known.
struct Target {
    image: image::RgbImage,
    class: Option<usize>,
    object: Option<BoundingBox>,
}

/// Sums of one method's measures over the maps it gave.
#[derive(Default)]
struct Totals {
    maps: usize,
    drop: f64,
    relative_drop: f64,
    increase: f64,
    deletion: f64,
    insertion: f64,
    road_morf: f64,
    road_lerf: f64,
    road_combined: f64,
    pointed: usize,
    hits: usize,
    left_out: usize,
}

pub fn run(session: &Session, args: &Args) -> Result<()> {
    let model = session.model(args.model.as_deref())?;
    model.require_head()?;
    let layer = match &args.layer {
        Some(name) => model.graph.find(name)?,
        None => default_layer(&model).context("the model has no layer with a spatial output")?,
    };
    let methods = match args.methods.is_empty() {
        true => CamMethod::ALL.to_vec(),
        false => args.methods.clone(),
    };
    let fit = session.fit(args.fit);
    let mut targets = Vec::new();
    if let Some(n) = args.shapes {
        let mut generator = Generator::new(args.seed);
        for i in 0..n {
            let sample = if i % 2 == 0 {
                generator.single()
            } else {
                generator.pair()
            };
            for object in &sample.objects {
                targets.push(Target {
                    image: sample.image.clone(),
                    class: Some(object.class),
                    object: Some(object.bbox),
                });
            }
        }
    }
    let subject = super::Subject {
        model: None,
        images: args.images.clone(),
        fit: args.fit,
    };
    let paths = match (session.batch(&subject)?, args.images.as_slice()) {
        (Some(paths), _) => paths,
        (None, [one]) => vec![one.clone()],
        (None, _) => Vec::new(),
    };
    for path in &paths {
        targets.push(Target {
            image: session.image(path)?,
            class: None,
            object: None,
        });
    }
    if targets.is_empty() {
        bail!("give images or folders to evaluate on, or --shapes N");
    }
    let mut totals: Vec<Totals> = methods.iter().map(|_| Totals::default()).collect();
    let bar = indicatif::ProgressBar::new(targets.len() as u64);
    for (t, target) in targets.iter().enumerate() {
        let input = model.input_tensor(&target.image, fit)?;
        let mut cams = CamSession::new(&model, &input, layer)?;
        let class = target.class.unwrap_or_else(|| cams.top_class());
        let (_, _, _, width) = input.dims4()?;
        for (method, total) in methods.iter().zip(&mut totals) {
            let map = match cams.compute(*method, class) {
                Ok(map) if !map.empty && !map.uniform => map,
                Ok(_) | Err(_) => {
                    total.left_out += 1;
                    continue;
                }
            };
            let change = ConfidenceChange::measure(&model, &input, &map.map, class)?;
            let curves = Curves::measure(&model, &input, &map.map, class, args.steps)?;
            // pytorch-grad-cam's noise (0.01), drawn from a seed per map.
            let road = Road::measure(
                &model,
                &input,
                &map.map,
                class,
                &PERCENTILES,
                0.01,
                t as u64,
            )?;
            let mean = |v: &[f32]| f64::from(v.iter().sum::<f32>()) / v.len().max(1) as f64;
            total.road_morf += mean(&road.most_relevant_first) - f64::from(road.before);
            total.road_lerf += mean(&road.least_relevant_first) - f64::from(road.before);
            total.road_combined += f64::from(road.combined());
            total.maps += 1;
            total.drop += f64::from(change.drop());
            total.relative_drop += f64::from(change.relative_drop());
            total.increase += f64::from(change.increase());
            total.deletion += f64::from(curves.deletion_auc());
            total.insertion += f64::from(curves.insertion_auc());
            if let Some(object) = &target.object {
                total.pointed += 1;
                total.hits += usize::from(pointing::hit(&map.map, width, object, 0));
            }
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    report(
        &model.name,
        &model.graph.node(layer).name,
        targets.len(),
        &methods,
        &totals,
        args.json,
    )
}

fn report(
    model: &str,
    layer: &str,
    targets: usize,
    methods: &[CamMethod],
    totals: &[Totals],
    json_out: bool,
) -> Result<()> {
    let mean = |sum: f64, n: usize| if n == 0 { f64::NAN } else { sum / n as f64 };
    if json_out {
        let rows: Vec<_> = methods
            .iter()
            .zip(totals)
            .map(|(m, t)| {
                json!({
                    "method": m.key(),
                    "maps": t.maps,
                    "left_out": t.left_out,
                    "drop_in_confidence": mean(t.drop, t.maps),
                    "average_drop_percent": 100.0 * mean(t.relative_drop, t.maps),
                    "increase_in_confidence_percent": 100.0 * mean(t.increase, t.maps),
                    "deletion_auc": mean(t.deletion, t.maps),
                    "insertion_auc": mean(t.insertion, t.maps),
                    "road_most_relevant_first": mean(t.road_morf, t.maps),
                    "road_least_relevant_first": mean(t.road_lerf, t.maps),
                    "road_combined": mean(t.road_combined, t.maps),
                    "pointing_game_percent": (t.pointed > 0).then(|| 100.0 * t.hits as f64 / t.pointed as f64),
                })
            })
            .collect();
        return print_json(
            &json!({"model": model, "layer": layer, "maps_asked": targets, "methods": rows}),
        );
    }
    let mut text = String::new();
    writeln!(text, "{model} at {layer}, {targets} maps per method")?;
    writeln!(
        text,
        "{:<12} {:>5} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10} {:>9}",
        "method",
        "maps",
        "avg drop%",
        "increase%",
        "deletion",
        "insertion",
        "ROAD MoRF",
        "ROAD LeRF",
        "ROAD",
        "pointing%"
    )?;
    for (m, t) in methods.iter().zip(totals) {
        let pointing = match t.pointed {
            0 => "-".to_string(),
            n => format!("{:.1}", 100.0 * t.hits as f64 / n as f64),
        };
        writeln!(
            text,
            "{:<12} {:>5} {:>10.1} {:>10.1} {:>10.3} {:>10.3} {:>10.4} {:>10.4} {:>10.4} {:>9}",
            m.title(),
            t.maps,
            100.0 * mean(t.relative_drop, t.maps),
            100.0 * mean(t.increase, t.maps),
            mean(t.deletion, t.maps),
            mean(t.insertion, t.maps),
            mean(t.road_morf, t.maps),
            mean(t.road_lerf, t.maps),
            mean(t.road_combined, t.maps),
            pointing
        )?;
    }
    writeln!(
        text,
        "avg drop% (lower is better) and increase% (higher): the image multiplied by the map; \
         deletion AUC (lower) and insertion AUC (higher): class probability as the most salient \
         pixels go or come back; ROAD: the change in class probability after removing the most \
         (MoRF, lower is better) or least (LeRF, higher) relevant pixels by noisy linear infilling, \
         averaged over the percentiles 10-90, and ROADCombined = (LeRF - MoRF) / 2 (higher); \
         pointing%: maps whose peak lies on the object"
    )?;
    emit(&text)
}
