//! The explorer's state and how keys change it. No terminal in here: tests drive it with key
//! events and read the state back.

use std::collections::HashSet;
use std::path::PathBuf;

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

use super::view::{Mode, ViewContent, ViewKey, ViewState, ACTIVATION_PAGE, FILTER_PAGE};
use crate::model::tree::{layer_tree, TreeNode};
use crate::model::{Model, NodeId, Prediction};
use crate::views::compare::CompareBy;
use crate::views::Rendered;
use crate::viz::cam::CamMethod;
use crate::viz::colormap::Colormap;

/// One visible row of the layer tree.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub path: String,
    pub label: String,
    pub depth: usize,
    pub node: NodeId,
    pub has_children: bool,
    pub expanded: bool,
    pub parameters: usize,
}

/// A line-editing prompt at the bottom.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PromptKind {
    /// `/`: jump to the first layer whose name contains the text.
    Search,
    /// `c`: a class index or label.
    Class,
    /// `o`: an image path, with Tab completion.
    Open,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prompt {
    pub kind: PromptKind,
    pub input: String,
}

/// What the event loop must do after a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    None,
    Quit,
    /// Stop the long job in progress (Ctrl-C while a view is computing).
    Cancel,
    Save,
    Open(PathBuf),
}

pub struct App {
    pub model_name: String,
    pub arch: String,
    pub device: String,
    pub labels: Vec<String>,
    tree: TreeNode,
    expanded: HashSet<String>,
    pub rows: Vec<Row>,
    pub selected: usize,
    pub mode: Mode,
    pub page: usize,
    pub channel: Option<usize>,
    pub class: Option<usize>,
    pub method: CamMethod,
    /// CAM mode's comparison grid (top classes or every method), if one is asked for.
    pub compare: Option<CompareBy>,
    /// The colormap of activation maps.
    pub colormap: Colormap,
    /// The colormap of class activation maps (OpenCV's jet, as pytorch-grad-cam draws them).
    pub cam_colormap: Colormap,
    pub image_path: PathBuf,
    /// Counts up with each image opened; part of every view key.
    pub image_id: u64,
    pub prediction: Option<Prediction>,
    /// Why no image is open: the first one failed and there is none to fall back on.
    pub image_error: Option<String>,
    /// The image shown before the one being opened, back in place if the new one fails.
    previous: Option<(u64, PathBuf, Option<Prediction>)>,
    pub view: ViewState,
    /// Counts up whenever the view's content changes (the graphics cache key).
    pub view_generation: u64,
    pub status: String,
    /// A note about the terminal (why pictures are half blocks), shown until the first key.
    pub notice: Option<String>,
    pub prompt: Option<Prompt>,
    pub help: bool,
    pub show_parameters: bool,
    /// Output shapes per node, for the tree rows.
    pub shapes: Vec<Vec<usize>>,
    pub kinds: Vec<&'static str>,
}

impl App {
    pub fn new(model: &Model, device: String, image_path: PathBuf, colormap: Colormap) -> App {
        let tree = layer_tree(&model.graph);
        let mut app = App {
            model_name: model.name.clone(),
            arch: model.arch.clone(),
            device,
            labels: model.labels.clone(),
            tree,
            expanded: HashSet::new(),
            rows: Vec::new(),
            selected: 0,
            mode: Mode::Activations,
            page: 0,
            channel: None,
            class: None,
            method: CamMethod::Gradcam,
            compare: None,
            colormap,
            cam_colormap: Colormap::Jet,
            image_path,
            image_id: 0,
            prediction: None,
            image_error: None,
            previous: None,
            view: ViewState::Empty,
            view_generation: 0,
            status: String::new(),
            notice: None,
            prompt: None,
            help: false,
            show_parameters: false,
            shapes: model
                .graph
                .nodes()
                .iter()
                .map(|n| n.shape.clone())
                .collect(),
            kinds: model.graph.nodes().iter().map(|n| n.op.kind()).collect(),
        };
        app.rebuild_rows();
        // Start on the first convolution (or the first real layer).
        app.selected = app
            .rows
            .iter()
            .position(|r| app.kinds[r.node] == "conv2d")
            .unwrap_or(app.rows.len().min(1));
        app
    }

    fn rebuild_rows(&mut self) {
        let selected_path = self.rows.get(self.selected).map(|r| r.path.clone());
        let mut rows = Vec::new();
        fn visit(n: &TreeNode, depth: usize, expanded: &HashSet<String>, rows: &mut Vec<Row>) {
            let open = expanded.contains(&n.path);
            rows.push(Row {
                path: n.path.clone(),
                label: n.label.clone(),
                depth,
                node: n.output,
                has_children: !n.children.is_empty(),
                expanded: open,
                parameters: n.parameters,
            });
            if open {
                for c in &n.children {
                    visit(c, depth + 1, expanded, rows);
                }
            }
        }
        for c in &self.tree.children {
            visit(c, 0, &self.expanded, &mut rows);
        }
        self.rows = rows;
        if let Some(p) = selected_path {
            if let Some(i) = self.rows.iter().position(|r| r.path == p) {
                self.selected = i;
            }
        }
        self.selected = self.selected.min(self.rows.len().saturating_sub(1));
    }

    pub fn selected_row(&self) -> &Row {
        &self.rows[self.selected]
    }

    /// The view the current state asks for.
    pub fn wanted_view(&self) -> ViewKey {
        ViewKey {
            image: self.image_id,
            node: self.selected_row().node,
            mode: self.mode,
            page: self.page,
            channel: if self.mode == Mode::Activations {
                self.channel
            } else {
                None
            },
            class: if self.mode == Mode::Cam {
                self.class
            } else {
                None
            },
            method: if self.mode == Mode::Cam {
                self.method
            } else {
                CamMethod::Gradcam
            },
            compare: if self.mode == Mode::Cam {
                self.compare
            } else {
                None
            },
            colormap: self.mode_colormap(),
        }
    }

    /// The colormap of the view on show: the CAM's in CAM mode, else the activations'.
    pub fn mode_colormap(&self) -> Colormap {
        match self.mode {
            Mode::Cam => self.cam_colormap,
            Mode::Activations | Mode::Filters | Mode::Info => self.colormap,
        }
    }

    /// The picture on screen, if any.
    pub fn picture(&self) -> Option<&Rendered> {
        match &self.view {
            ViewState::Ready {
                content: ViewContent::Picture(rendered),
                ..
            } => Some(rendered),
            _ => None,
        }
    }

    fn select(&mut self, index: usize) {
        if index != self.selected {
            self.selected = index;
            self.page = 0;
            self.channel = None;
        }
    }

    fn channel_count(&self) -> usize {
        self.shapes[self.selected_row().node]
            .get(1)
            .copied()
            .unwrap_or(0)
    }

    fn page_size(&self) -> usize {
        if self.mode == Mode::Filters {
            FILTER_PAGE
        } else {
            ACTIVATION_PAGE
        }
    }

    /// Handles one key press.
    pub fn on_key(&mut self, key: KeyEvent) -> Action {
        if let Some(prompt) = &mut self.prompt {
            return match key.code {
                KeyCode::Esc => {
                    self.prompt = None;
                    Action::None
                }
                KeyCode::Enter => {
                    let p = self.prompt.take().expect("prompt is open");
                    self.submit(p)
                }
                KeyCode::Backspace => {
                    prompt.input.pop();
                    Action::None
                }
                KeyCode::Tab if prompt.kind == PromptKind::Open => {
                    prompt.input = complete_path(&prompt.input);
                    Action::None
                }
                KeyCode::Char(c) => {
                    prompt.input.push(c);
                    Action::None
                }
                _ => Action::None,
            };
        }
        if self.help {
            // Any key closes the help.
            self.help = false;
            return Action::None;
        }
        let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
        match key.code {
            KeyCode::Char('c') if ctrl => {
                return match &self.view {
                    ViewState::Computing { key, .. } => {
                        self.view = ViewState::Failed {
                            key: key.clone(),
                            message: "cancelled; Ctrl-C again quits, another layer or view \
                                      and back computes it again"
                                .into(),
                        };
                        Action::Cancel
                    }
                    _ => Action::Quit,
                }
            }
            KeyCode::Char('q') => return Action::Quit,
            KeyCode::Char('?') => self.help = true,
            KeyCode::Down | KeyCode::Char('j') => {
                self.select((self.selected + 1).min(self.rows.len() - 1))
            }
            KeyCode::Up | KeyCode::Char('k') => self.select(self.selected.saturating_sub(1)),
            KeyCode::PageDown => self.select((self.selected + 10).min(self.rows.len() - 1)),
            KeyCode::PageUp => self.select(self.selected.saturating_sub(10)),
            KeyCode::Home | KeyCode::Char('g') => self.select(0),
            KeyCode::End | KeyCode::Char('G') => self.select(self.rows.len() - 1),
            KeyCode::Right | KeyCode::Char('l') => {
                let row = self.selected_row().clone();
                if row.has_children && !row.expanded {
                    self.expanded.insert(row.path);
                    self.rebuild_rows();
                } else if row.has_children {
                    self.select(self.selected + 1);
                }
            }
            KeyCode::Left | KeyCode::Char('h') => {
                let row = self.selected_row().clone();
                if row.expanded {
                    self.expanded.remove(&row.path);
                    self.rebuild_rows();
                } else if let Some(parent) = row.path.rsplit_once('.').map(|(p, _)| p.to_string()) {
                    self.expanded.remove(&parent);
                    self.rebuild_rows();
                    if let Some(i) = self.rows.iter().position(|r| r.path == parent) {
                        self.select(i);
                    }
                }
            }
            KeyCode::Tab => self.set_mode(self.mode.next()),
            KeyCode::Char(d @ '1'..='4') => self.set_mode(Mode::ALL[d as usize - '1' as usize]),
            KeyCode::Char(']') => {
                let pages = self.channel_count().div_ceil(self.page_size()).max(1);
                if let Some(c) = self.channel {
                    self.channel = Some((c + 1).min(self.channel_count().saturating_sub(1)));
                } else {
                    self.page = (self.page + 1).min(pages - 1);
                }
            }
            KeyCode::Char('[') => {
                if let Some(c) = self.channel {
                    self.channel = Some(c.saturating_sub(1));
                } else {
                    self.page = self.page.saturating_sub(1);
                }
            }
            KeyCode::Enter if self.mode == Mode::Activations => {
                let is_maps = self.shapes[self.selected_row().node].len() == 4;
                self.channel = match self.channel {
                    Some(_) => None,
                    None if is_maps => Some(self.page * ACTIVATION_PAGE),
                    None => None,
                };
            }
            KeyCode::Esc => self.channel = None,
            KeyCode::Char('c') => {
                self.mode = Mode::Cam;
                self.prompt = Some(Prompt {
                    kind: PromptKind::Class,
                    input: String::new(),
                });
            }
            KeyCode::Char('m') => {
                let i = CamMethod::ALL
                    .iter()
                    .position(|&m| m == self.method)
                    .unwrap_or(0);
                self.method = CamMethod::ALL[(i + 1) % CamMethod::ALL.len()];
                self.mode = Mode::Cam;
            }
            KeyCode::Char('v') => {
                self.compare = match self.compare {
                    None => Some(CompareBy::Classes),
                    Some(CompareBy::Classes) => Some(CompareBy::Methods),
                    Some(CompareBy::Methods) => None,
                };
                if self.mode != Mode::Cam {
                    self.set_mode(Mode::Cam);
                }
            }
            KeyCode::Char('p') => match self.mode {
                Mode::Cam => self.cam_colormap = self.cam_colormap.next(),
                Mode::Activations | Mode::Filters | Mode::Info => {
                    self.colormap = self.colormap.next()
                }
            },
            KeyCode::Char('o') => {
                self.prompt = Some(Prompt {
                    kind: PromptKind::Open,
                    input: String::new(),
                })
            }
            KeyCode::Char('/') => {
                self.prompt = Some(Prompt {
                    kind: PromptKind::Search,
                    input: String::new(),
                })
            }
            KeyCode::Char('P') => self.show_parameters = !self.show_parameters,
            KeyCode::Char('s') => return Action::Save,
            _ => {}
        }
        Action::None
    }

    fn set_mode(&mut self, mode: Mode) {
        if mode != self.mode {
            self.mode = mode;
            self.page = 0;
        }
    }

    fn submit(&mut self, p: Prompt) -> Action {
        let text = p.input.trim().to_string();
        match p.kind {
            PromptKind::Search => {
                if let Some(path) = self.find_path(&text) {
                    // Open every module above it.
                    let parts: Vec<&str> = path.split('.').collect();
                    for i in 1..parts.len() {
                        self.expanded.insert(parts[..i].join("."));
                    }
                    self.rebuild_rows();
                    if let Some(i) = self.rows.iter().position(|r| r.path == path) {
                        self.select(i);
                    }
                } else {
                    self.status = format!("no layer matches '{text}'");
                }
            }
            PromptKind::Class => {
                let top: Vec<usize> = self
                    .prediction
                    .as_ref()
                    .map(|p| p.top(9).into_iter().map(|(i, _)| i).collect())
                    .unwrap_or_default();
                let picked = if text.is_empty() {
                    Some(None)
                } else if let Some(rank) =
                    text.strip_prefix('#').and_then(|r| r.parse::<usize>().ok())
                {
                    top.get(rank.wrapping_sub(1)).map(|&c| Some(c))
                } else if let Ok(i) = text.parse::<usize>() {
                    (i < self.labels.len()).then_some(Some(i))
                } else {
                    self.labels
                        .iter()
                        .position(|l| l.eq_ignore_ascii_case(&text))
                        .map(Some)
                };
                match picked {
                    Some(c) => self.class = c,
                    None => self.status = format!("unknown class '{text}'"),
                }
            }
            PromptKind::Open => {
                if !text.is_empty() {
                    return Action::Open(PathBuf::from(text));
                }
            }
        }
        Action::None
    }

    /// Path of the first tree entry whose name contains `text`.
    fn find_path(&self, text: &str) -> Option<String> {
        if text.is_empty() {
            return None;
        }
        let mut found = None;
        self.tree.walk(&mut |n, _| {
            if found.is_none() && n.path.contains(text) {
                found = Some(n.path.clone());
            }
        });
        found
    }

    /// Called when a new image starts loading.
    pub fn opening(&mut self, path: PathBuf) -> u64 {
        let old_path = std::mem::replace(&mut self.image_path, path);
        self.previous = Some((self.image_id, old_path, self.prediction.take()));
        self.image_id += 1;
        self.view = ViewState::Empty;
        self.image_id
    }

    /// Called when the image being opened has loaded (`Ok`) or failed: a failure puts the
    /// previous image back and says why in the status line.
    pub fn opened(&mut self, result: Result<Prediction, String>) {
        let previous = self.previous.take();
        match result {
            Ok(p) => {
                self.prediction = Some(p);
                self.image_error = None;
                self.status = format!("opened {}", self.image_path.display());
            }
            Err(e) => {
                self.status = format!("error: {e}");
                match previous.filter(|p| p.2.is_some()) {
                    Some((id, path, prediction)) => {
                        (self.image_id, self.image_path, self.prediction) = (id, path, prediction);
                    }
                    None => self.image_error = Some(e),
                }
            }
        }
    }
}

/// Completes a path prompt to the longest common prefix of the matching entries.
pub fn complete_path(input: &str) -> String {
    let (dir, prefix) = match input.rfind('/') {
        Some(i) => (&input[..=i], &input[i + 1..]),
        None => ("", input),
    };
    let read_dir = if dir.is_empty() { "." } else { dir };
    let Ok(entries) = std::fs::read_dir(read_dir) else {
        return input.to_string();
    };
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok())
        .map(|e| {
            let mut n = e.file_name().to_string_lossy().into_owned();
            if e.path().is_dir() {
                n.push('/');
            }
            n
        })
        .filter(|n| n.starts_with(prefix))
        .collect();
    names.sort();
    let Some(first) = names.first() else {
        return input.to_string();
    };
    let common = names.iter().fold(first.clone(), |acc, n| {
        acc.chars()
            .zip(n.chars())
            .take_while(|(a, b)| a == b)
            .map(|(a, _)| a)
            .collect()
    });
    format!("{dir}{common}")
}
