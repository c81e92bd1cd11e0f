//! Colormaps from values in `0..=1` to RGB.

use std::fmt;
use std::str::FromStr;
use std::sync::OnceLock;

use serde::Deserialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Colormap {
    Viridis,
    Magma,
    Inferno,
    Plasma,
    Turbo,
    /// OpenCV's jet (what pytorch-grad-cam's `show_cam_on_image` uses), the usual one for class
    /// activation maps.
    Jet,
    Gray,
}

impl Colormap {
    pub const ALL: [Colormap; 7] = [
        Colormap::Viridis,
        Colormap::Magma,
        Colormap::Inferno,
        Colormap::Plasma,
        Colormap::Turbo,
        Colormap::Jet,
        Colormap::Gray,
    ];

    /// The colour of `t`, clamped to `0..=1`.
    pub fn rgb(self, t: f32) -> [u8; 3] {
        let t = if t.is_nan() { 0.0 } else { t.clamp(0.0, 1.0) };
        let g = |grad: colorous::Gradient| {
            let c = grad.eval_continuous(t as f64);
            [c.r, c.g, c.b]
        };
        match self {
            Colormap::Viridis => g(colorous::VIRIDIS),
            Colormap::Magma => g(colorous::MAGMA),
            Colormap::Inferno => g(colorous::INFERNO),
            Colormap::Plasma => g(colorous::PLASMA),
            Colormap::Turbo => g(colorous::TURBO),
            Colormap::Jet => opencv_jet()[(t * 255.0).round() as usize],
            Colormap::Gray => {
                let v = (t * 255.0).round() as u8;
                [v, v, v]
            }
        }
    }

    /// A 256-entry lookup table.
    pub fn table(self) -> Vec<[u8; 3]> {
        match self {
            Colormap::Jet => opencv_jet().to_vec(),
            Colormap::Viridis
            | Colormap::Magma
            | Colormap::Inferno
            | Colormap::Plasma
            | Colormap::Turbo
            | Colormap::Gray => (0..256).map(|i| self.rgb(i as f32 / 255.0)).collect(),
        }
    }

    /// The next colormap in [`Colormap::ALL`], wrapping around.
    pub fn next(self) -> Colormap {
        let i = Colormap::ALL.iter().position(|&c| c == self).unwrap_or(0);
        Colormap::ALL[(i + 1) % Colormap::ALL.len()]
    }
}

/// OpenCV's `COLORMAP_JET` as RGB, built as OpenCV builds it: GNU Octave's `jet(256)`
/// (piecewise-linear blue, cyan, yellow, red) stored as `f32`, interpolated in `f32` at 256 points
/// of `linspace(0, 1)` (which moves a few values by an ulp), scaled by 255 and rounded half to
/// even. tests/cam_parity.rs compares it with `cv2.applyColorMap`'s table.
fn opencv_jet() -> &'static [[u8; 3]; 256] {
    static TABLE: OnceLock<[[u8; 3]; 256]> = OnceLock::new();
    TABLE.get_or_init(|| {
        let octave = |x: f64| -> [f32; 3] {
            let between = |a: f64, b: f64| x >= a && x < b;
            let r = if between(0.375, 0.625) {
                4.0 * x - 1.5
            } else if between(0.625, 0.875) {
                1.0
            } else if x >= 0.875 {
                -4.0 * x + 4.5
            } else {
                0.0
            };
            let g = if between(0.125, 0.375) {
                4.0 * x - 0.5
            } else if between(0.375, 0.625) {
                1.0
            } else if between(0.625, 0.875) {
                -4.0 * x + 3.5
            } else {
                0.0
            };
            let b = if x < 0.125 {
                4.0 * x + 0.5
            } else if between(0.125, 0.375) {
                1.0
            } else if between(0.375, 0.625) {
                -4.0 * x + 2.5
            } else {
                0.0
            };
            [r as f32, g as f32, b as f32]
        };
        let y: Vec<[f32; 3]> = (0..256).map(|i| octave(i as f64 / 255.0)).collect();
        // OpenCV's linspace and interp1, in f32: each point falls between two of the same grid.
        let step = 1.0f32 / 255.0;
        let x: Vec<f32> = (0..256).map(|i| i as f32 * step).collect();
        std::array::from_fn(|i| {
            let xi = x[i];
            let high = x.partition_point(|&v| v < xi).clamp(1, 255);
            let low = high - 1;
            std::array::from_fn(|c| {
                let v = y[low][c] + (xi - x[low]) * (y[high][c] - y[low][c]) / (x[high] - x[low]);
                (v * 255.0).round_ties_even().clamp(0.0, 255.0) as u8
            })
        })
    })
}

impl fmt::Display for Colormap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = format!("{self:?}").to_lowercase();
        f.write_str(&s)
    }
}

impl FromStr for Colormap {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Colormap::ALL
            .iter()
            .copied()
            .find(|c| c.to_string() == s.to_ascii_lowercase())
            .ok_or_else(|| format!("unknown colormap '{s}'"))
    }
}
