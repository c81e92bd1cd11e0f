//! Colormaps from values in `0..=1` to RGB.

use std::fmt;
use std::str::FromStr;

use serde::Deserialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Colormap {
    Viridis,
    Magma,
    Inferno,
    Plasma,
    Turbo,
    /// Matplotlib's and OpenCV's jet, the usual one for class activation maps.
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
            Colormap::Jet => jet(t),
            Colormap::Gray => {
                let v = (t * 255.0).round() as u8;
                [v, v, v]
            }
        }
    }

    /// A 256-entry lookup table.
    pub fn table(self) -> Vec<[u8; 3]> {
        (0..256).map(|i| self.rgb(i as f32 / 255.0)).collect()
    }

    /// The next colormap in [`Colormap::ALL`], wrapping around.
    pub fn next(self) -> Colormap {
        let i = Colormap::ALL.iter().position(|&c| c == self).unwrap_or(0);
        Colormap::ALL[(i + 1) % Colormap::ALL.len()]
    }
}

/// Matplotlib's jet: piecewise-linear blue, cyan, yellow, red.
fn jet(t: f32) -> [u8; 3] {
    let ch = |x: f32| ((1.5 - (4.0 * t - x).abs()).clamp(0.0, 1.0) * 255.0).round() as u8;
    [ch(3.0), ch(2.0), ch(1.0)]
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
