//! What the right-hand pane shows: the key that identifies a view and its computed content.

use std::time::Duration;

use crate::model::NodeId;
use crate::views::compare::CompareBy;
use crate::views::Rendered;
use crate::viz::cam::CamMethod;
use crate::viz::colormap::Colormap;

/// The four views of a layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mode {
    Activations,
    Cam,
    Filters,
    Info,
}

impl Mode {
    pub const ALL: [Mode; 4] = [Mode::Activations, Mode::Cam, Mode::Filters, Mode::Info];

    pub fn title(self) -> &'static str {
        match self {
            Mode::Activations => "Activations",
            Mode::Cam => "CAM",
            Mode::Filters => "Filters",
            Mode::Info => "Info",
        }
    }

    pub fn next(self) -> Mode {
        let i = Mode::ALL.iter().position(|&m| m == self).unwrap_or(0);
        Mode::ALL[(i + 1) % Mode::ALL.len()]
    }
}

/// Channels per page in the activations and filters views.
pub const ACTIVATION_PAGE: usize = 64;
pub const FILTER_PAGE: usize = 16;

/// Everything a view's content depends on; equal keys give equal pictures (the worker's cache
/// key).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ViewKey {
    /// Which opened image (counts up with each image opened).
    pub image: u64,
    pub node: NodeId,
    pub mode: Mode,
    pub page: usize,
    /// One channel enlarged instead of the grid.
    pub channel: Option<usize>,
    /// Target class of a CAM; `None` is the top prediction.
    pub class: Option<usize>,
    pub method: CamMethod,
    /// A grid of CAMs side by side instead of one.
    pub compare: Option<CompareBy>,
    pub colormap: Colormap,
}

/// A computed view.
#[derive(Debug, Clone)]
pub enum ViewContent {
    Picture(Rendered),
    Text(String),
}

impl ViewContent {
    /// Approximate memory held, for the view cache's budget.
    pub fn size_bytes(&self) -> usize {
        match self {
            ViewContent::Picture(rendered) => rendered.size_bytes(),
            ViewContent::Text(t) => t.len(),
        }
    }
}

/// The state of the view pane.
#[derive(Debug, Clone)]
pub enum ViewState {
    Empty,
    Computing {
        key: ViewKey,
        done: usize,
        total: usize,
    },
    Ready {
        key: ViewKey,
        content: ViewContent,
        elapsed: Duration,
    },
    Failed {
        key: ViewKey,
        message: String,
    },
}

impl ViewState {
    pub fn key(&self) -> Option<&ViewKey> {
        match self {
            ViewState::Empty => None,
            ViewState::Computing { key, .. }
            | ViewState::Ready { key, .. }
            | ViewState::Failed { key, .. } => Some(key),
        }
    }
}
