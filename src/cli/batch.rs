//! Batches: a command run over many images, one at a time (memory stays that of one image),
//! with a progress bar, one output per image named after it, and a JSON summary of every image
//! in the output folder. An image that cannot be read or computed is listed in the summary with
//! why, and the others go on.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use image::RgbImage;
use serde_json::{json, Value};

use super::{default_output, print_json, Session};

/// Runs `each` on every image of `paths` and writes the summary `{model}_{command}_summary.json`
/// (never over an earlier one); prints one line per image, or with `json` the summary itself.
pub fn run(
    session: &Session,
    paths: &[PathBuf],
    (model, command): (&str, &str),
    json_out: bool,
    mut each: impl FnMut(&Path, RgbImage) -> Result<(Value, String)>,
) -> Result<()> {
    let bar = indicatif::ProgressBar::new(paths.len() as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} images, eta {eta}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    bar.set_message(command.to_string());
    let mut rows = Vec::new();
    let mut failed = 0;
    for path in paths {
        let outcome = session.image(path).and_then(|image| each(path, image));
        match outcome {
            Ok((row, line)) => {
                if !json_out {
                    bar.suspend(|| println!("{line}"));
                }
                rows.push(json!({"image": path, "result": row}));
            }
            Err(e) => {
                failed += 1;
                let why = format!("{e:#}");
                bar.suspend(|| eprintln!("skipped {}: {why}", path.display()));
                rows.push(json!({"image": path, "error": why}));
            }
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    let summary = json!({
        "model": model,
        "command": command,
        "images": paths.len(),
        "failed": failed,
        "results": rows,
    });
    let stem = format!("{model}_{command}_summary");
    let png = default_output(session, &stem, |base| vec![base.with_extension("json")])?;
    let file = png.with_extension("json");
    std::fs::write(&file, serde_json::to_string_pretty(&summary)? + "\n")
        .with_context(|| format!("cannot write {}", file.display()))?;
    if json_out {
        print_json(&summary)?;
    } else {
        eprintln!(
            "{} of {} images done; summary {}",
            paths.len() - failed,
            paths.len(),
            file.display()
        );
    }
    if failed == paths.len() {
        bail!("no image could be processed");
    }
    Ok(())
}

/// Refuses the single-file outputs in a batch, where each image gets its own.
pub fn refuse_single_outputs(outputs: &[(&str, bool)]) -> Result<()> {
    if let Some((flag, _)) = outputs.iter().find(|(_, given)| *given) {
        bail!(
            "{flag} names one file; with several images each gets its own in the output folder \
             (config.toml's output_dir)"
        );
    }
    Ok(())
}
