//! The explorer: a ratatui front end over the engine. State and keys live in [`app`], drawing in
//! [`ui`], computation in [`worker`] (a background thread), terminal images in [`graphics`], and
//! leaving when the terminal goes away in [`hangup`].

pub mod app;
pub mod cache;
pub mod graphics;
pub mod hangup;
pub mod ui;
pub mod view;
pub mod worker;

use std::io::Stdout;
use std::path::PathBuf;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use crossterm::event::{self, Event, KeyEventKind};
use crossterm::terminal::{
    disable_raw_mode, enable_raw_mode, Clear, ClearType, EnterAlternateScreen,
};
use crossterm::ExecutableCommand;
use ratatui::backend::CrosstermBackend;
use ratatui::Terminal;

use app::{Action, App};
use graphics::{Graphics, ProtocolChoice};
use hangup::Lifeline;
use view::ViewState;
use worker::{Job, Reply};

use crate::config::Config;
use crate::model::{device::describe, Model};
use crate::viz::render::save_png_new;

/// Restores the terminal: raw mode off, main screen back, cursor shown. Written straight to the
/// file descriptor, past stdout's lock, so the hang-up watch can run it while the main thread is
/// stuck in a write.
fn restore() {
    let _ = disable_raw_mode();
    let leave = b"\x1b[?1049l\x1b[?25h";
    // SAFETY: writes a byte string to standard output; errors (a closed terminal) are ignored.
    unsafe {
        libc::write(libc::STDOUT_FILENO, leave.as_ptr().cast(), leave.len());
    }
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
    // SIGTERM, SIGHUP (the SSH connection dropped), an outside SIGINT and the terminal hanging
    // up end the explorer through the same exit as `q`, or by force if that takes too long.
    let lifeline = Lifeline::start(libc::STDIN_FILENO, restore)?;
    enable_raw_mode().context("cannot switch the terminal to raw mode")?;
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        restore();
        previous(info);
    }));
    let result = (|| {
        let mut out = std::io::stdout();
        out.execute(EnterAlternateScreen)?;
        let mut graphics = Graphics::detect(protocol, &mut out, libc::STDIN_FILENO)?;
        out.execute(Clear(ClearType::All))?;
        app.notice = graphics.note().map(str::to_string);
        let mut terminal = Terminal::new(CrosstermBackend::new(out))?;
        event_loop(
            &mut terminal,
            &mut app,
            &mut graphics,
            model,
            config,
            &lifeline,
        )
    })();
    restore();
    lifeline.finish();
    result
}

fn event_loop(
    terminal: &mut Terminal<CrosstermBackend<Stdout>>,
    app: &mut App,
    graphics: &mut Graphics,
    model: Arc<Model>,
    config: Config,
    lifeline: &Lifeline,
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
        if lifeline.stopping() {
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
        graphics.poll();
        terminal.draw(|f| ui::draw(f, app, graphics))?;
        // While a view or its picture is on its way, look for it often; otherwise idle.
        let waiting = app.prediction.is_none()
            || app.view.key() != requested.as_ref()
            || matches!(app.view, ViewState::Computing { .. })
            || graphics.busy();
        let mut ready = event::poll(Duration::ZERO)?;
        if !ready {
            let timeout = Duration::from_millis(if waiting { 4 } else { 50 });
            match hangup::wait_for_input(libc::STDIN_FILENO, timeout) {
                hangup::Input::HungUp => return Ok(()),
                hangup::Input::Ready => ready = event::poll(Duration::ZERO)?,
                hangup::Input::Quiet => {}
            }
        }
        if !ready {
            continue;
        }
        let help_was_open = app.help;
        let event = event::read()?;
        if let Event::Key(key) = &event {
            if key.kind != KeyEventKind::Release {
                app.notice = None;
            }
        }
        match event {
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
        if help_was_open && !app.help {
            // The help was drawn over the picture: write the picture again.
            graphics.repaint();
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
    let Some(rendered) = app.picture() else {
        return "nothing to save yet".into();
    };
    let image = app.image_path.file_stem().unwrap_or_default();
    let stem = rendered.file_stem(
        &model.name,
        &image.to_string_lossy(),
        &app.selected_row().path,
    );
    match save_png_new(&rendered.picture, dir, &stem, &rendered.chunks) {
        Ok(p) => format!("saved {}", p.display()),
        Err(e) => format!("error: {e:#}"),
    }
}
