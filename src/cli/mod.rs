//! The command line: global options, the headless subcommands, and what they share.

mod activations;
mod batch;
mod cam;
mod eval;
mod filters;
mod info;
mod predict;

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use candle_core::Device;
use clap::{Parser, Subcommand};
use image::RgbImage;

use crate::config::Config;
use crate::input::{self, Fit};
use crate::model::{device::parse_device, Model, Overrides};
use crate::tui::graphics::ProtocolChoice;

#[derive(Debug, Parser)]
#[command(
    name = "convscope",
    version,
    about = "See inside convolutional networks from the terminal"
)]
pub struct Cli {
    /// Config file (default: ./config.toml, then the user's convscope/config.toml).
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// cpu, cuda or cuda:N.
    #[arg(long, global = true)]
    pub device: Option<String>,
    /// Architecture of a bare checkpoint, instead of detecting it (the list comes from the
    /// families table).
    #[arg(long, global = true, help = arch_help())]
    pub arch: Option<String>,
    /// The prefix of the model's own names in the checkpoint (`net.`), taken off them; the
    /// common wrappers' prefixes (module., model., _orig_mod., ...) are found without it.
    #[arg(long, global = true)]
    pub prefix: Option<String>,
    /// The input size, `H` or `HxW`: a fully convolutional checkpoint run at another size than
    /// its model.toml's or its family's, or the sizes an ONNX graph leaves free.
    #[arg(long, global = true, value_name = "HxW", value_parser = parse_size)]
    pub size: Option<[usize; 2]>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// The interactive explorer (what `convscope [MODEL] [IMAGE]` opens).
    Explore(ExploreArgs),
    /// The layer tree with output shapes and parameter counts.
    Info(info::Args),
    /// Top classes for an image.
    Predict(predict::Args),
    /// A layer's channels as a grid of maps (or one map enlarged).
    Activations(activations::Args),
    /// Class activation maps (Grad-CAM and its family) over the image.
    Cam(cam::Args),
    /// Filter patterns: the input each channel responds to most, by gradient ascent.
    Filters(filters::Args),
    /// How good each CAM method's maps are: confidence change, deletion, insertion, pointing.
    Eval(eval::Args),
}

#[derive(Debug, clap::Args)]
pub struct ExploreArgs {
    /// Model folder, model.toml or checkpoint (default: from config.toml).
    pub model: Option<PathBuf>,
    /// Image file (default: from config.toml).
    pub image: Option<PathBuf>,
    /// Terminal graphics protocol (default: from config.toml, else ask the terminal).
    #[arg(long, value_enum)]
    pub protocol: Option<ProtocolChoice>,
}

/// `--arch`'s help: every name the families accept.
fn arch_help() -> String {
    format!(
        "Architecture of a bare checkpoint, instead of detecting it: {}",
        crate::model::arch::arch_names().join(", ")
    )
}

/// Global options that take a value (to find the first positional argument).
const VALUED_OPTIONS: [&str; 5] = ["--config", "--device", "--arch", "--prefix", "--protocol"];

/// `convscope [OPTIONS] [MODEL] [IMAGE]` means `convscope explore ...`: inserts the `explore`
/// subcommand when the first positional argument names no subcommand.
pub fn with_default_subcommand(args: Vec<String>) -> Vec<String> {
    use clap::CommandFactory;
    let cmd = Cli::command();
    let known: Vec<String> = cmd
        .get_subcommands()
        .map(|c| c.get_name().to_string())
        .chain(["help".to_string()])
        .collect();
    let mut i = 1;
    while i < args.len() {
        let a = &args[i];
        if a == "-h" || a == "--help" || a == "-V" || a == "--version" {
            return args;
        }
        if VALUED_OPTIONS.contains(&a.as_str()) {
            i += 2;
            continue;
        }
        if a.starts_with('-') {
            i += 1;
            continue;
        }
        break;
    }
    if i < args.len() && known.contains(&args[i]) {
        return args;
    }
    // Global options may follow a subcommand, so `explore` can go first.
    let mut out = args;
    out.insert(1.min(out.len()), "explore".to_string());
    out
}

/// The model and images a headless view works on, and how the images are fitted.
#[derive(Debug, clap::Args)]
pub struct Subject {
    /// Model folder, model.toml or checkpoint (default: from config.toml).
    pub model: Option<PathBuf>,
    /// Image files or folders of them (default: the image from config.toml). More than one
    /// image, or a folder, is a batch: one output per image in the output folder and a JSON
    /// summary.
    pub images: Vec<PathBuf>,
    /// How the image is fitted to the model's input.
    #[arg(long = "crop", value_enum)]
    pub fit: Option<Fit>,
}

/// A [`Subject`] loaded: the model, the image and where it came from, the fit to use.
pub struct Loaded {
    pub model: Model,
    pub image_path: PathBuf,
    pub image: RgbImage,
    pub fit: Fit,
}

/// What every subcommand starts from: the config and the device.
pub struct Session {
    pub config: Config,
    pub device: Device,
    pub overrides: Overrides,
}

/// `--size`: `H` (square) or `HxW`, each 1 to 4096 (as model.toml's `input_size`).
fn parse_size(text: &str) -> std::result::Result<[usize; 2], String> {
    let side = |v: &str| -> std::result::Result<usize, String> {
        v.trim()
            .parse::<usize>()
            .ok()
            .filter(|s| (1..=4096).contains(s))
            .ok_or_else(|| format!("'{text}' is not a size: H or HxW, each 1 to 4096"))
    };
    match text.split_once(['x', 'X']) {
        Some((h, w)) => Ok([side(h)?, side(w)?]),
        None => side(text).map(|s| [s, s]),
    }
}

impl Session {
    pub fn new(cli: &Cli) -> Result<Session> {
        let config = Config::load(cli.config.as_deref())?;
        let device = parse_device(cli.device.as_deref().unwrap_or(&config.device))?;
        Ok(Session {
            config,
            device,
            overrides: Overrides {
                arch: cli.arch.clone(),
                prefix: cli.prefix.clone(),
                size: cli.size,
            },
        })
    }

    pub fn model(&self, path: Option<&Path>) -> Result<Model> {
        let path = path.unwrap_or(&self.config.model);
        Model::open_with(path, &self.overrides, &self.device)
    }

    /// Opens the model, then reads the one image (so a bad model is reported first).
    pub fn load(&self, subject: &Subject) -> Result<Loaded> {
        let model = self.model(subject.model.as_deref())?;
        let image_path = match &subject.images[..] {
            [] => self.config.image.clone(),
            [one] => one.clone(),
            [..] => bail!("this command takes one image"),
        };
        let image = self.image(&image_path)?;
        Ok(Loaded {
            model,
            image_path,
            image,
            fit: self.fit(subject.fit),
        })
    }

    pub fn image_path<'a>(&'a self, path: Option<&'a Path>) -> &'a Path {
        path.unwrap_or(&self.config.image)
    }

    /// The images of a batch, when `subject` names more than one image or a folder: the files
    /// named, and each folder's files (not its subfolders) by name.
    pub fn batch(&self, subject: &Subject) -> Result<Option<Vec<PathBuf>>> {
        if let [one] = &subject.images[..] {
            if !one.is_dir() {
                return Ok(None);
            }
        }
        if subject.images.is_empty() {
            return Ok(None);
        }
        let mut paths = Vec::new();
        for path in &subject.images {
            if path.is_dir() {
                let mut files: Vec<PathBuf> = std::fs::read_dir(path)
                    .with_context(|| format!("cannot read folder {}", path.display()))?
                    .filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| p.is_file())
                    .collect();
                files.sort();
                paths.extend(files);
            } else {
                paths.push(path.clone());
            }
        }
        if paths.is_empty() {
            bail!("no images in {}", subject.images[0].display());
        }
        Ok(Some(paths))
    }

    pub fn image(&self, path: &Path) -> Result<RgbImage> {
        input::load_image(path, self.config.image_limits())
    }

    pub fn fit(&self, fit: Option<Fit>) -> Fit {
        fit.unwrap_or(self.config.fit)
    }
}

/// Where a picture goes without `-o`: `{output_dir}/{stem}.png`, creating the folder, or
/// `{stem}-2.png`, `{stem}-3.png`, ... when `writes` of that path (the files a run derives from
/// it) would replace a file: a default name never overwrites the output of an earlier run.
fn default_output(
    session: &Session,
    stem: &str,
    writes: impl Fn(&Path) -> Vec<PathBuf>,
) -> Result<PathBuf> {
    let dir = &session.config.output_dir;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let stem = stem.replace(['/', ' '], "_");
    (1..)
        .map(|n| match n {
            1 => dir.join(format!("{stem}.png")),
            n => dir.join(format!("{stem}-{n}.png")),
        })
        .find(|base| writes(base).iter().all(|p| !p.exists()))
        .context("no free file name")
}

/// Where a view's picture goes: `-o`'s path, else its own name in the output folder (never over
/// an earlier run's file).
fn view_path(
    session: &Session,
    output: Option<&PathBuf>,
    rendered: &crate::views::Rendered,
    (model, image, layer): (&str, &str, &str),
) -> Result<PathBuf> {
    match output {
        Some(p) => Ok(p.clone()),
        None => default_output(session, &rendered.file_stem(model, image, layer), |base| {
            vec![base.to_path_buf()]
        }),
    }
}

/// Refuses a command line that names one file for two outputs (`-o x.png --npy x.png`), of
/// which only the last written would remain.
fn distinct_outputs(paths: &[Option<&PathBuf>]) -> Result<()> {
    let mut seen: Vec<PathBuf> = Vec::new();
    for path in paths.iter().flatten() {
        let absolute = std::path::absolute(path)
            .with_context(|| format!("cannot resolve {}", path.display()))?;
        if seen.contains(&absolute) {
            bail!("{} is named for two outputs", path.display());
        }
        seen.push(absolute);
    }
    Ok(())
}

/// The files a command has written, named in the error when a later one fails, so that no
/// written file goes unreported.
#[derive(Default)]
struct Written(Vec<PathBuf>);

impl Written {
    fn save(&mut self, path: &Path, save: impl FnOnce() -> Result<()>) -> Result<()> {
        match save() {
            Ok(()) => {
                self.0.push(path.to_path_buf());
                Ok(())
            }
            Err(e) if self.0.is_empty() => Err(e),
            Err(e) => {
                let list: Vec<String> = self.0.iter().map(|p| p.display().to_string()).collect();
                bail!("{e:#} (written before this failed: {})", list.join(", "))
            }
        }
    }
}

/// The image's file stem, for default output names.
fn image_stem(path: &Path) -> String {
    path.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "image".into())
}

/// Prints a picture in the terminal with viuer (kitty, iTerm2, sixel or half blocks), at most
/// 80 columns wide.
fn show(picture: &image::RgbImage) -> Result<()> {
    let config = viuer::Config {
        absolute_offset: false,
        width: Some(picture.width().min(80)),
        ..Default::default()
    };
    viuer::print(&image::DynamicImage::ImageRgb8(picture.clone()), &config)
        .map_err(|e| anyhow::anyhow!("cannot show the picture in this terminal: {e}"))?;
    Ok(())
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> Result<()> {
    let session = Session::new(&cli)?;
    if !matches!(cli.command, Command::Explore(_)) {
        end_cleanly_on_signals()?;
    }
    match &cli.command {
        Command::Explore(a) => {
            let model = session.model(a.model.as_deref())?;
            let image = session.image_path(a.image.as_deref()).to_path_buf();
            let protocol = a.protocol.unwrap_or(session.config.protocol);
            crate::tui::run(model, image, session.config, protocol)
        }
        Command::Info(a) => info::run(&session, a),
        Command::Predict(a) => predict::run(&session, a),
        Command::Eval(a) => eval::run(&session, a),
        Command::Activations(a) => activations::run(&session, a),
        Command::Cam(a) => cam::run(&session, a),
        Command::Filters(a) => filters::run(&session, a),
    }
}

/// Ends a headless command on Ctrl-C, SIGTERM or a hang-up as the signal would (exit status
/// 128 + signal), but first deletes the temporary files of saves still in progress, which the
/// default action would leave behind. (The explorer handles signals itself.)
fn end_cleanly_on_signals() -> Result<()> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP])?;
    std::thread::spawn(move || {
        if let Some(signal) = signals.forever().next() {
            crate::viz::temporary::remove_unfinished();
            std::process::exit(128 + signal);
        }
    });
    Ok(())
}

/// Writes text to stdout; a closed pipe (`| head`) ends the output quietly.
fn emit(text: &str) -> Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|_| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(()),
    }
}

/// Prints a value as pretty JSON on stdout.
fn print_json(value: &serde_json::Value) -> Result<()> {
    emit(&(serde_json::to_string_pretty(value)? + "\n"))
}
