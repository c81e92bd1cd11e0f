//! Leaving when the terminal goes away: SIGTERM, SIGHUP and an outside SIGINT set the stop flag
//! the event loop reads, and a watch thread sees the terminal hang up (poll(2) reports POLLHUP on
//! a pty whose other end closed). If the main thread has not left within [`GRACE`] of either —
//! stuck writing to or reading from a dead terminal, or in a long computation — the watch
//! restores what it can and ends the process itself.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

/// How long the main thread has to leave on its own once asked to.
pub const GRACE: Duration = Duration::from_millis(500);
/// How often the watch looks at the terminal.
const TICK: Duration = Duration::from_millis(50);
/// How long a forced exit waits for the terminal to be restored.
const RESTORE_WAIT: Duration = Duration::from_millis(200);

pub struct Lifeline {
    /// Set by a signal or a hang-up: the event loop leaves at its next turn.
    pub stop: Arc<AtomicBool>,
    /// Set by the main thread once the terminal is restored.
    finished: Arc<AtomicBool>,
}

impl Lifeline {
    /// Installs the signal flags and starts the watch on terminal `input`. `restore` runs on the
    /// watch thread before a forced exit.
    pub fn start(input: std::os::fd::RawFd, restore: fn()) -> Result<Lifeline> {
        let stop = Arc::new(AtomicBool::new(false));
        for signal in [
            signal_hook::consts::SIGTERM,
            signal_hook::consts::SIGHUP,
            signal_hook::consts::SIGINT,
        ] {
            signal_hook::flag::register(signal, stop.clone())
                .context("cannot install the signal handlers")?;
        }
        let finished = Arc::new(AtomicBool::new(false));
        let (s, f) = (stop.clone(), finished.clone());
        std::thread::Builder::new()
            .name("hangup-watch".into())
            .spawn(move || watch(input, &s, &f, restore))
            .context("cannot start the hang-up watch")?;
        Ok(Lifeline { stop, finished })
    }

    pub fn stopping(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// The main thread is done with the terminal: no forced exit after this.
    pub fn finish(&self) {
        self.finished.store(true, Ordering::SeqCst);
    }
}

fn watch(input: std::os::fd::RawFd, stop: &AtomicBool, finished: &AtomicBool, restore: fn()) {
    let mut asked: Option<Instant> = None;
    loop {
        if finished.load(Ordering::SeqCst) {
            return;
        }
        if hung_up(input, TICK) {
            stop.store(true, Ordering::SeqCst);
        } else if asked.is_none() && !stop.load(Ordering::SeqCst) {
            continue;
        }
        if stop.load(Ordering::SeqCst) {
            let since = *asked.get_or_insert_with(Instant::now);
            if since.elapsed() >= GRACE && !finished.load(Ordering::SeqCst) {
                // On a thread of its own: a write to a terminal that stopped reading may block.
                let restoring = std::thread::spawn(restore);
                let started = Instant::now();
                while !restoring.is_finished() && started.elapsed() < RESTORE_WAIT {
                    std::thread::sleep(Duration::from_millis(5));
                }
                std::process::exit(0);
            }
            // A dead terminal answers poll at once: pace the loop.
            std::thread::sleep(TICK);
        }
    }
}

/// What the terminal's input has for us.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Input {
    /// Nothing within the time asked.
    Quiet,
    /// Bytes to read.
    Ready,
    /// The terminal hung up (or the descriptor is unusable): nothing will ever come.
    HungUp,
}

/// Waits up to `timeout` for input on the terminal. The event loop waits here rather than in
/// crossterm's poll, which spins without end on a terminal that hung up.
pub fn wait_for_input(fd: std::os::fd::RawFd, timeout: Duration) -> Input {
    poll_terminal(fd, libc::POLLIN, timeout)
}

/// Waits up to `timeout` for the terminal to hang up; true if it has.
fn hung_up(fd: std::os::fd::RawFd, timeout: Duration) -> bool {
    // No events asked: poll reports only hang-ups and errors.
    poll_terminal(fd, 0, timeout) == Input::HungUp
}

fn poll_terminal(fd: std::os::fd::RawFd, events: libc::c_short, timeout: Duration) -> Input {
    let mut fds = [libc::pollfd {
        fd,
        events,
        revents: 0,
    }];
    // SAFETY: one valid pollfd, its length passed with it.
    let ready = unsafe { libc::poll(fds.as_mut_ptr(), 1, timeout.as_millis() as i32) };
    if ready < 0 {
        // Interrupted by a signal: the caller looks at its flags and asks again.
        return Input::Quiet;
    }
    let revents = fds[0].revents;
    if revents & (libc::POLLHUP | libc::POLLERR | libc::POLLNVAL) != 0 {
        Input::HungUp
    } else if revents & libc::POLLIN != 0 {
        Input::Ready
    } else {
        Input::Quiet
    }
}
