//! The background compute thread: takes jobs, keeps one full forward pass per image (so moving
//! through layers is a cache hit), caches finished views, reports filter progress, and drops a
//! job as soon as a newer one arrives.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, Sender, TryRecvError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use candle_core::Tensor;
use image::RgbImage;

use super::cache::Bounded;
use super::view::{Mode, ViewContent, ViewKey, ACTIVATION_PAGE, FILTER_PAGE};
use crate::config::Config;
use crate::input::load_image;
use crate::model::device::with_memory_hint;
use crate::model::{Activations, Keep, Model, Prediction};
use crate::views::activations::{self, Channels};
use crate::views::{cam, compare, filters, info};
use crate::viz::cam::CamSession;
use crate::viz::filters::{Cancelled, Recipe};

/// Maps per row of the explorer's activation grids (a page of 64 is 8 x 8).
pub const EXPLORER_PER_ROW: usize = 8;

/// Finished views kept per image, by the size of their pictures.
pub const VIEW_CACHE_BYTES: usize = 256 << 20;
/// CAM sessions kept (each holds a layer's gradients per class asked for).
const CAM_SESSIONS: usize = 8;

pub enum Job {
    /// Load an image and run the forward pass; `id` names it in later view keys.
    Open {
        id: u64,
        path: PathBuf,
    },
    View(ViewKey),
    /// Stop the job in progress; nothing else.
    Cancel,
}

pub enum Reply {
    Opened {
        id: u64,
        result: Result<Prediction, String>,
    },
    Progress {
        key: ViewKey,
        done: usize,
        total: usize,
    },
    View {
        key: ViewKey,
        result: Result<ViewContent, String>,
        elapsed: Duration,
    },
}

/// The current image with its kept forward pass.
struct Current {
    id: u64,
    original: RgbImage,
    input: Tensor,
    acts: Activations,
    prediction: Prediction,
}

/// Starts the worker; it ends when the job channel closes.
pub fn spawn(
    model: Arc<Model>,
    config: Config,
    jobs: Receiver<Job>,
    replies: Sender<Reply>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        Worker {
            model: &model,
            config,
            jobs,
            replies,
            cache: Bounded::new(VIEW_CACHE_BYTES),
            current: None,
        }
        .run()
    })
}

struct Worker<'m> {
    model: &'m Model,
    config: Config,
    jobs: Receiver<Job>,
    replies: Sender<Reply>,
    cache: Bounded<ViewKey, ViewContent>,
    current: Option<Current>,
}

impl<'m> Worker<'m> {
    fn run(mut self) {
        let mut cams: Bounded<(u64, usize), CamSession<'m>> = Bounded::new(CAM_SESSIONS);
        let mut pending: Option<Job> = None;
        loop {
            let job = match pending.take() {
                Some(j) => j,
                None => match self.jobs.recv() {
                    Ok(j) => j,
                    Err(_) => return,
                },
            };
            // Only the newest job matters: skip views the user has already moved past.
            let job = self.latest(job);
            match job {
                Job::Open { id, path } => {
                    let result = self.open(id, &path).map_err(|e| format!("{e:#}"));
                    cams.clear();
                    self.cache.clear();
                    if self.replies.send(Reply::Opened { id, result }).is_err() {
                        return;
                    }
                }
                Job::Cancel => {}
                Job::View(key) => {
                    let started = Instant::now();
                    let result = match self.cache.get(&key) {
                        Some(c) => Ok(c.clone()),
                        None => self.compute(&key, &mut cams, &mut pending),
                    };
                    if let Err(e) = &result {
                        if e.downcast_ref::<Cancelled>().is_some() {
                            continue;
                        }
                    }
                    if let Ok(content) = &result {
                        self.cache
                            .insert(key.clone(), content.clone(), content.size_bytes());
                    }
                    let reply = Reply::View {
                        key,
                        result: result.map_err(|e| with_memory_hint(format!("{e:#}"))),
                        elapsed: started.elapsed(),
                    };
                    if self.replies.send(reply).is_err() {
                        return;
                    }
                }
            }
        }
    }

    /// The last queued job, or `job` if none is queued; an `Open` is never skipped.
    fn latest(&self, mut job: Job) -> Job {
        loop {
            match self.jobs.try_recv() {
                Ok(next) => {
                    if matches!(job, Job::Open { .. }) && matches!(next, Job::View(_)) {
                        // Keep the open; the view after it is asked again by the UI.
                        return job;
                    }
                    job = next;
                }
                Err(_) => return job,
            }
        }
    }

    fn open(&mut self, id: u64, path: &std::path::Path) -> Result<Prediction> {
        let original = load_image(path, self.config.image_limits())?;
        let input = self.model.input_tensor(&original, self.config.fit)?;
        let acts = self.model.graph.forward(&input, &Keep::All)?;
        let prediction = self.model.prediction(&acts)?;
        self.current = Some(Current {
            id,
            original,
            input,
            acts,
            prediction: prediction.clone(),
        });
        Ok(prediction)
    }

    fn compute(
        &self,
        key: &ViewKey,
        cams: &mut Bounded<(u64, usize), CamSession<'m>>,
        pending: &mut Option<Job>,
    ) -> Result<ViewContent> {
        let model = self.model;
        let cur = match &self.current {
            Some(c) if c.id == key.image => c,
            _ => bail!("no image is loaded"),
        };
        let count = model.graph.node(key.node).shape[1];
        match key.mode {
            Mode::Info => Ok(ViewContent::Text(info::layer_text(
                model,
                key.node,
                Some(&cur.acts),
                Some(&cur.prediction),
            )?)),
            Mode::Activations => {
                let (start, end) = page_range(key.page, ACTIVATION_PAGE, count);
                let request = activations::Request {
                    layer: key.node,
                    channels: match key.channel {
                        Some(c) => Channels::One(c),
                        None => Channels::Range(start, end),
                    },
                    colormap: key.colormap,
                    norm: self.config.norm,
                    per_row: EXPLORER_PER_ROW,
                };
                Ok(ViewContent::Picture(activations::render(
                    model, &cur.acts, &request,
                )?))
            }
            Mode::Cam => {
                let id = (key.image, key.node);
                if cams.get(&id).is_none() {
                    let session = CamSession::from_activations(
                        model,
                        &cur.input,
                        cur.acts.clone(),
                        key.node,
                    )?;
                    cams.insert(id, session, 1);
                }
                let session = cams.get(&id).expect("just inserted");
                let request = cam::Request {
                    layer: key.node,
                    method: key.method,
                    class: key.class.unwrap_or_else(|| session.top_class()),
                    colormap: key.colormap,
                    alpha: cam::DEFAULT_ALPHA,
                    aug_smooth: false,
                };
                if let Some(by) = key.compare {
                    let request = compare::Request {
                        by,
                        classes: compare::DEFAULT_CLASSES,
                        cam: request,
                    };
                    let rendered =
                        compare::render(model, &cur.original, &cur.input, session, &request)?;
                    return Ok(ViewContent::Picture(rendered));
                }
                let (rendered, _) =
                    cam::render(model, &cur.original, &cur.input, session, &request)?;
                Ok(ViewContent::Picture(rendered))
            }
            Mode::Filters => {
                let (start, end) = page_range(key.page, FILTER_PAGE, count);
                let request = filters::Request {
                    layer: key.node,
                    channels: (start..end).collect(),
                    settings: filters::default_settings(model, key.node, Recipe::Classic),
                };
                let cancel = AtomicBool::new(false);
                let replies = self.replies.clone();
                let jobs = &self.jobs;
                let mut progress = |done, total| {
                    let _ = replies.send(Reply::Progress {
                        key: key.clone(),
                        done,
                        total,
                    });
                    if pending.is_none() {
                        match jobs.try_recv() {
                            Ok(job) => {
                                *pending = Some(job);
                                cancel.store(true, Ordering::Relaxed);
                            }
                            Err(TryRecvError::Disconnected) => {
                                cancel.store(true, Ordering::Relaxed)
                            }
                            Err(TryRecvError::Empty) => {}
                        }
                    }
                };
                let (rendered, _) = filters::render(model, &request, &mut progress, &cancel)?;
                Ok(ViewContent::Picture(rendered))
            }
        }
    }
}

/// `[start, end)` of page `page` of `size` items out of `count`.
pub fn page_range(page: usize, size: usize, count: usize) -> (usize, usize) {
    let start = (page * size).min(count.saturating_sub(1) / size * size);
    (start, (start + size).min(count))
}
