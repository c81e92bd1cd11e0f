//! Terminal multiplexers between convscope and the terminal: tmux (whose passthrough lets graphics
//! sequences reach the outer terminal when `allow-passthrough` is on) and GNU screen. Their
//! settings are read, never changed.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Whether tmux lets a pane's escape sequences through to the outer terminal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Passthrough {
    /// `allow-passthrough` is `on` (or `all`).
    On,
    /// `allow-passthrough` is `off` (tmux's default).
    Off,
    /// Not readable: tmux runs on another machine (SSH from inside a local tmux), or the
    /// `tmux` command did not answer.
    Unknown,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Multiplexer {
    /// Straight to the terminal.
    None,
    Tmux(Passthrough),
    /// GNU screen cuts long escape sequences; pictures stay half blocks there.
    Screen,
}

/// How long the `tmux show-options` call may take.
const TMUX_TIMEOUT: Duration = Duration::from_millis(500);

impl Multiplexer {
    /// From the environment (TMUX, TERM, TERM_PROGRAM, STY) and, inside a local tmux, its
    /// `allow-passthrough` option.
    pub fn detect() -> Multiplexer {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let term = var("TERM").unwrap_or_default();
        let local_tmux = var("TMUX").is_some();
        if local_tmux || term.starts_with("tmux") || var("TERM_PROGRAM").as_deref() == Some("tmux")
        {
            let passthrough = if local_tmux {
                read_passthrough(var("TMUX_PANE").as_deref())
            } else {
                Passthrough::Unknown
            };
            return Multiplexer::Tmux(passthrough);
        }
        if var("STY").is_some() {
            return Multiplexer::Screen;
        }
        Multiplexer::None
    }

    /// Whether graphics sequences must be wrapped in tmux's passthrough.
    pub fn is_tmux(self) -> bool {
        matches!(self, Multiplexer::Tmux(_))
    }

    /// `sequence` as it must be written for the outer terminal to receive it.
    pub fn wrap(self, sequence: &str) -> String {
        match self {
            Multiplexer::Tmux(_) => tmux_passthrough(sequence),
            Multiplexer::None | Multiplexer::Screen => sequence.to_string(),
        }
    }
}

/// tmux's passthrough: `ESC P tmux; ... ESC \` with every ESC inside doubled.
pub fn tmux_passthrough(sequence: &str) -> String {
    format!("\x1bPtmux;{}\x1b\\", sequence.replace('\x1b', "\x1b\x1b"))
}

/// `allow-passthrough` of this pane (inherited from the window, session or global options),
/// read with `tmux show-options`, bounded in time.
fn read_passthrough(pane: Option<&str>) -> Passthrough {
    let mut cmd = Command::new("tmux");
    cmd.args(["show-options", "-Apv"]);
    if let Some(p) = pane {
        cmd.args(["-t", p]);
    }
    cmd.arg("allow-passthrough")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let Ok(mut child) = cmd.spawn() else {
        return Passthrough::Unknown;
    };
    let deadline = Instant::now() + TMUX_TIMEOUT;
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
            Ok(None) | Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                return Passthrough::Unknown;
            }
        }
    }
    let Ok(out) = child.wait_with_output() else {
        return Passthrough::Unknown;
    };
    parse_passthrough(&String::from_utf8_lossy(&out.stdout))
}

/// The value `tmux show-options -v allow-passthrough` prints; the last line is the pane's own
/// (with `-A`, inherited values come first).
pub fn parse_passthrough(text: &str) -> Passthrough {
    match text.lines().map(str::trim).rfind(|l| !l.is_empty()) {
        Some("on") | Some("all") => Passthrough::On,
        Some("off") => Passthrough::Off,
        _ => Passthrough::Unknown,
    }
}
