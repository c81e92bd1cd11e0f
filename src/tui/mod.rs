//! The explorer: a ratatui front end over the engine. State and keys live in [`app`], drawing in
//! [`ui`], computation in [`worker`] (a background thread), terminal images in [`graphics`].

pub mod app;
pub mod cache;
pub mod graphics;
pub mod ui;
pub mod view;
pub mod worker;

use std::io::Stdout;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use crossterm::event::{self, Event, KeyEventKind};
use crossterm::terminal::{
    disable_raw_mode, enable_raw_mode, EnterAlternateScreen, LeaveAlternateScreen,
};
use crossterm::ExecutableCommand;
use ratatui::backend::CrosstermBackend;
use ratatui::Terminal;

use app::{Action, App};
use graphics::{Graphics, ProtocolChoice};
use view::ViewState;
use worker::{Job, Reply};

use crate::config::Config;
use crate::model::{device::describe, Model};
use crate::viz::render::save_png_new;

/// Restores the terminal: raw mode off, main screen back, cursor shown.
fn restore() {
    let _ = disable_raw_mode();
    let mut out = std::io::stdout();
    let _ = out.execute(LeaveAlternateScreen);
    let _ = out.execute(crossterm::cursor::Show);
}

/// Runs the explorer until the user quits.
pub fn run(model: Model, image: PathBuf, config: Config, protocol: ProtocolChoice) -> Result<()> {
    use std::io::IsTerminal;
    if !std::io::stdout().is_terminal() || !std::io::stdin().is_terminal() {
        anyhow::bail!(
            "the explorer needs a terminal; for scripts use the subcommands (convscope --help)"
        );
    }
    let model = Arc::new(model);
    let mut app = App::new(
        &model,
        describe(&model.device),
        image.clone(),
        config.colormap,
    );
    // SIGTERM, SIGHUP (the SSH connection dropped) and an outside SIGINT end the explorer
    // through the same exit as `q`, so the terminal is restored.
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGHUP,
        signal_hook::consts::SIGINT,
    ] {
        signal_hook::flag::register(signal, stop.clone())
            .context("cannot install the signal handlers")?;
    }
    enable_raw_mode().context("cannot switch the terminal to raw mode")?;
    std::io::stdout().execute(EnterAlternateScreen)?;
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        restore();
        previous(info);
    }));
    let result = (|| {
        let mut graphics = Graphics::new(protocol);
        let mut terminal = Terminal::new(CrosstermBackend::new(std::io::stdout()))?;
        terminal.clear()?;
        event_loop(&mut terminal, &mut app, &mut graphics, model, config, &stop)
    })();
    restore();
    result
}

fn event_loop(
    terminal: &mut Terminal<CrosstermBackend<Stdout>>,
    app: &mut App,
    graphics: &mut Graphics,
    model: Arc<Model>,
    config: Config,
    stop: &AtomicBool,
) -> Result<()> {
    let (job_tx, job_rx) = mpsc::channel();
    let (reply_tx, reply_rx) = mpsc::channel();
    let output_dir = config.output_dir.clone();
    let worker = worker::spawn(model.clone(), config, job_rx, reply_tx);
    let id = app.opening(app.image_path.clone());
    job_tx.send(Job::Open {
        id,
        path: app.image_path.clone(),
    })?;
    let mut requested = None;
    loop {
        if stop.load(Ordering::Relaxed) {
            // Leave at once; the worker thread ends with the process.
            return Ok(());
        }
        while let Ok(reply) = reply_rx.try_recv() {
            apply(app, reply);
        }
        if app.prediction.is_some() {
            let wanted = app.wanted_view();
            if requested.as_ref() != Some(&wanted) {
                job_tx.send(Job::View(wanted.clone()))?;
                requested = Some(wanted);
            }
        }
        terminal.draw(|f| ui::draw(f, app, graphics))?;
        // While a view is on its way, look for the worker's reply often; otherwise idle.
        let waiting = app.prediction.is_none()
            || app.view.key() != requested.as_ref()
            || matches!(app.view, ViewState::Computing { .. });
        if !event::poll(Duration::from_millis(if waiting { 4 } else { 50 }))? {
            continue;
        }
        match event::read()? {
            Event::Key(key) if key.kind != KeyEventKind::Release => match app.on_key(key) {
                Action::Quit => break,
                Action::Cancel => job_tx.send(Job::Cancel)?,
                Action::None => {}
                Action::Save => app.status = save(app, &model, &output_dir),
                Action::Open(path) => {
                    let id = app.opening(path.clone());
                    requested = None;
                    job_tx.send(Job::Open { id, path })?;
                }
            },
            Event::Resize(..) => terminal.autoresize()?,
            _ => {}
        }
    }
    drop(job_tx);
    // A long job notices the closed channel at its next step.
    let _ = worker.join();
    Ok(())
}

/// Applies a worker reply to the state.
pub fn apply(app: &mut App, reply: Reply) {
    match reply {
        Reply::Opened { id, result } => {
            if id == app.image_id {
                app.opened(result);
            }
        }
        Reply::Progress { key, done, total } => {
            // A finished or cancelled view stays as it is.
            if !matches!(&app.view, ViewState::Ready { key: k, .. } | ViewState::Failed { key: k, .. } if *k == key)
            {
                app.view = ViewState::Computing { key, done, total };
            }
        }
        Reply::View {
            key,
            result,
            elapsed,
        } => {
            app.view = match result {
                Ok(content) => ViewState::Ready {
                    key,
                    content,
                    elapsed,
                },
                Err(message) => ViewState::Failed { key, message },
            };
            app.view_generation += 1;
        }
    }
}

/// Saves the view's picture at full resolution; returns the status line.
fn save(app: &App, model: &Model, dir: &std::path::Path) -> String {
    let Some((image, what)) = app.picture() else {
        return "nothing to save yet".into();
    };
    let layer = &app.selected_row().path;
    let stem = format!("{}_{}_{}", model.name, layer, what);
    match save_png_new(image, dir, &stem, &[("convscope:layer", layer.clone())]) {
        Ok(p) => format!("saved {}", p.display()),
        Err(e) => format!("error: {e:#}"),
    }
}
