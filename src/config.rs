//! config.toml: every default of the tool. The first file found is used: `--config FILE`, then
//! `./config.toml`, then `convscope/config.toml` in the user's config folder; built-in defaults
//! fill what it leaves out, and command-line flags win over all of it.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::Deserialize;

use crate::input::{Fit, ImageLimits};
use crate::tui::graphics::ProtocolChoice;
use crate::viz::activations::ChannelNorm;
use crate::viz::colormap::Colormap;

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// `cpu`, `cuda` or `cuda:N`.
    pub device: String,
    /// Model folder or checkpoint opened when none is given.
    pub model: PathBuf,
    /// Image used when none is given.
    pub image: PathBuf,
    /// Colormap of activation maps.
    pub colormap: Colormap,
    /// Per-channel normalisation of activation maps.
    pub norm: ChannelNorm,
    /// How images are fitted to the model's input size.
    pub fit: Fit,
    /// Folder for saved pictures.
    pub output_dir: PathBuf,
    /// Terminal graphics protocol of the explorer.
    pub protocol: ProtocolChoice,
    pub limits: Limits,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    pub max_image_side: u32,
    pub max_image_mebibytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        let d = ImageLimits::default();
        Limits {
            max_image_side: d.max_side,
            max_image_mebibytes: d.max_mebibytes,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            device: "cpu".into(),
            model: PathBuf::from("models/shapes"),
            image: PathBuf::from("models/shapes/two_shapes.png"),
            colormap: Colormap::Viridis,
            norm: ChannelNorm::Standard,
            fit: Fit::Resize,
            output_dir: PathBuf::from("convscope-out"),
            protocol: ProtocolChoice::Auto,
            limits: Limits::default(),
        }
    }
}

impl Config {
    /// Loads the first config file found (see the module doc); relative paths in it are taken
    /// from the file's folder.
    pub fn load(explicit: Option<&Path>) -> Result<Config> {
        let path = match explicit {
            Some(p) => Some(p.to_path_buf()),
            None => [
                Some(PathBuf::from("config.toml")),
                dirs::config_dir().map(|d| d.join("convscope/config.toml")),
            ]
            .into_iter()
            .flatten()
            .find(|p| p.is_file()),
        };
        match path {
            Some(p) => Config::read(&p),
            None => Ok(Config::default()),
        }
    }

    pub fn read(path: &Path) -> Result<Config> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read config {}", path.display()))?;
        let mut cfg: Config = toml::from_str(&text).map_err(|e| {
            anyhow::anyhow!("{} is not a valid config: {}", path.display(), e.message())
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        for p in [&mut cfg.model, &mut cfg.image, &mut cfg.output_dir] {
            if p.is_relative() && !base.as_os_str().is_empty() {
                *p = base.join(&*p);
            }
        }
        Ok(cfg)
    }

    pub fn image_limits(&self) -> ImageLimits {
        ImageLimits {
            max_side: self.limits.max_image_side,
            max_mebibytes: self.limits.max_image_mebibytes,
        }
    }
}
