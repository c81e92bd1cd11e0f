//! Which graphics protocol the explorer uses, from the user's choice, the multiplexer in between
//! and the terminal's answers, with a one-line note for the status bar whenever the pictures fall
//! back to half blocks for a reason the user can change.

use ratatui_image::picker::ProtocolType;

use super::multiplexer::{Multiplexer, Passthrough};
use super::probe::Answers;

/// Which graphics protocol to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProtocolChoice {
    /// Ask the terminal (through tmux's passthrough too); half blocks when nothing better answers.
    #[default]
    Auto,
    Halfblocks,
    Sixel,
    Kitty,
    Iterm2,
}

/// Cell size assumed when the terminal reports none (only half blocks or a forced protocol).
pub const DEFAULT_CELL: (u16, u16) = (10, 20);

/// What the environment says beyond the query's answers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Hints {
    /// iTerm2 or WezTerm (TERM_PROGRAM, LC_TERMINAL, WEZTERM_EXECUTABLE): their own protocol.
    pub iterm2: bool,
    /// Cell size from the TIOCGWINSZ pixel fields (xterm fills them and leaves `CSI 16 t`
    /// unanswered; tmux passes on the outer terminal's).
    pub cell_from_winsize: Option<(u16, u16)>,
}

impl Hints {
    pub fn from_env() -> Hints {
        let var = |name: &str| std::env::var(name).unwrap_or_default();
        let iterm2 = ["iTerm.app", "WezTerm"].contains(&var("TERM_PROGRAM").as_str())
            || var("LC_TERMINAL") == "iTerm2"
            || !var("WEZTERM_EXECUTABLE").is_empty();
        Hints {
            iterm2,
            cell_from_winsize: cell_from_winsize(),
        }
    }
}

/// The decision: protocol, cell size in pixels, whether to wrap for tmux, and a note.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub protocol: ProtocolType,
    pub cell: (u16, u16),
    pub tmux: bool,
    pub note: Option<String>,
}

/// Whether the choice needs the terminal asked at all (the query costs a round trip).
pub fn needs_query(choice: ProtocolChoice, mux: Multiplexer) -> bool {
    match choice {
        ProtocolChoice::Halfblocks => false,
        ProtocolChoice::Auto
        | ProtocolChoice::Sixel
        | ProtocolChoice::Kitty
        | ProtocolChoice::Iterm2 => !matches!(
            mux,
            Multiplexer::Screen | Multiplexer::Tmux(Passthrough::Off)
        ),
    }
}

/// How to say that nothing answered in time.
fn silent_note(mux: Multiplexer, timeout_ms: u64) -> String {
    let base =
        format!("the terminal did not answer the graphics query in {timeout_ms} ms: half blocks");
    match mux {
        Multiplexer::Tmux(_) => format!(
            "{base} (tmux needs `set -g allow-passthrough on` and an attached client; or --protocol)"
        ),
        Multiplexer::None | Multiplexer::Screen => format!("{base} (choose one with --protocol)"),
    }
}

pub fn decide(
    choice: ProtocolChoice,
    mux: Multiplexer,
    answers: Option<&Answers>,
    hints: &Hints,
    timeout_ms: u64,
) -> Decision {
    let cell = answers.and_then(|a| a.cell).or(hints.cell_from_winsize);
    let halfblocks = |note: Option<String>| Decision {
        protocol: ProtocolType::Halfblocks,
        cell: cell.unwrap_or(DEFAULT_CELL),
        tmux: mux.is_tmux(),
        note,
    };
    let forced = match choice {
        ProtocolChoice::Auto => None,
        ProtocolChoice::Halfblocks => return halfblocks(None),
        ProtocolChoice::Sixel => Some(ProtocolType::Sixel),
        ProtocolChoice::Kitty => Some(ProtocolType::Kitty),
        ProtocolChoice::Iterm2 => Some(ProtocolType::Iterm2),
    };
    // What keeps pictures from the terminal whatever was asked for.
    match mux {
        Multiplexer::Screen => {
            return halfblocks(Some(
                "GNU screen cuts graphics sequences: half blocks (tmux passes pictures through)"
                    .into(),
            ))
        }
        Multiplexer::Tmux(Passthrough::Off) => {
            return halfblocks(Some(
                "tmux allow-passthrough is off: half blocks (`set -g allow-passthrough on` for pictures)"
                    .into(),
            ))
        }
        Multiplexer::Tmux(Passthrough::On | Passthrough::Unknown) | Multiplexer::None => {}
    }
    if let Some(protocol) = forced {
        let note = cell.is_none().then(|| {
            format!(
                "the terminal did not report its cell size: assuming {}x{} px",
                DEFAULT_CELL.0, DEFAULT_CELL.1
            )
        });
        return Decision {
            protocol,
            cell: cell.unwrap_or(DEFAULT_CELL),
            tmux: mux.is_tmux(),
            note,
        };
    }
    let Some(answers) = answers else {
        return halfblocks(Some(silent_note(mux, timeout_ms)));
    };
    let version = answers.version.as_deref().unwrap_or("");
    let wanted = if hints.iterm2 || version.starts_with("iTerm2") || version.starts_with("WezTerm")
    {
        Some(ProtocolType::Iterm2)
    } else if answers.kitty && kitty_placeholders(version) {
        Some(ProtocolType::Kitty)
    } else if answers.sixel {
        Some(ProtocolType::Sixel)
    } else if answers.kitty {
        let who = if version.is_empty() {
            "this terminal"
        } else {
            version
        };
        return halfblocks(Some(format!(
            "{who} has kitty graphics without Unicode placeholders (kitty 0.28+): half blocks"
        )));
    } else {
        None
    };
    match (wanted, cell) {
        (None, _) => halfblocks(None),
        (Some(_), None) => halfblocks(Some(
            "the terminal did not report its cell size in pixels: half blocks (or --protocol)"
                .into(),
        )),
        (Some(protocol), Some(cell)) => Decision {
            protocol,
            cell,
            tmux: mux.is_tmux(),
            note: None,
        },
    }
}

/// Whether a terminal's XTVERSION names one that draws kitty images through Unicode
/// placeholders: kitty 0.28 and later, Ghostty.
pub fn kitty_placeholders(version: &str) -> bool {
    if version.to_ascii_lowercase().starts_with("ghostty") {
        return true;
    }
    let Some(v) = version
        .strip_prefix("kitty(")
        .and_then(|v| v.strip_suffix(')'))
    else {
        return false;
    };
    let mut parts = v.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    let (major, minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    (major, minor) >= (0, 28)
}

/// Cell size from the terminal's window size in pixels, where it reports one.
fn cell_from_winsize() -> Option<(u16, u16)> {
    // SAFETY: TIOCGWINSZ fills a winsize struct; failure leaves it zeroed.
    let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
    let ok = unsafe { libc::ioctl(libc::STDOUT_FILENO, libc::TIOCGWINSZ, &mut ws) } == 0;
    (ok && ws.ws_xpixel > 0 && ws.ws_ypixel > 0 && ws.ws_col > 0 && ws.ws_row > 0)
        .then(|| (ws.ws_xpixel / ws.ws_col, ws.ws_ypixel / ws.ws_row))
        .filter(|&(w, h)| w > 0 && h > 0)
}
