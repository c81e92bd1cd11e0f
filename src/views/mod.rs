//! Views: the pictures convscope makes of a layer, built in one place for the command line and
//! the explorer. Each view takes a request (the layer and what to show of it) and the work
//! already done (the image's kept forward pass, a CAM session) and gives a [`Rendered`]
//! picture with its caption, the words its file is named by, and the text chunks its PNG
//! carries; the same request gives the same picture from either front end.

pub mod activations;
pub mod cam;
pub mod compare;
pub mod filters;
pub mod info;

use image::RgbImage;

/// A finished view.
#[derive(Debug, Clone)]
pub struct Rendered {
    pub picture: RgbImage,
    /// One line describing it: "Grad-CAM for 'star' (logit 4.10) at relu5".
    pub caption: String,
    /// What it shows, for file names: `activations_grid`, `gradcam_star`.
    pub what: String,
    /// PNG text chunks: the layer, method, class, channels, recipe.
    pub chunks: Vec<(&'static str, String)>,
    /// Whether it depends on the image (activations, CAMs) or only on the model (filters).
    pub of_image: bool,
}

impl Rendered {
    /// Approximate memory held.
    pub fn size_bytes(&self) -> usize {
        self.picture.as_raw().len() + self.caption.len() + self.what.len()
    }

    /// The file stem it is saved under: `{model}_{image}_{layer}_{what}`, without the image
    /// for a view that does not depend on one.
    pub fn file_stem(&self, model: &str, image: &str, layer: &str) -> String {
        match self.of_image {
            true => format!("{model}_{image}_{layer}_{}", self.what),
            false => format!("{model}_{layer}_{}", self.what),
        }
    }
}

/// A label made safe for a file name: anything but letters and digits becomes `_`.
pub fn file_safe(label: &str) -> String {
    label
        .chars()
        .map(|c| if c.is_alphanumeric() { c } else { '_' })
        .collect()
}
