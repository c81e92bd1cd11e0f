//! Asking the terminal what it can draw: one batch of queries (kitty graphics, XTVERSION, cell
//! size in pixels, primary device attributes) closed by a device status report, which every
//! terminal answers. Replies are read with poll(2) until that report or a deadline, on the
//! calling thread, so nothing of the query outlives it to eat keys later.

use std::io::Write;
use std::os::fd::RawFd;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};

use super::multiplexer::Multiplexer;
use crate::tui::hangup::{wait_for_input, Input};

/// What the terminal said about itself.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Answers {
    /// Primary device attributes list 4 (sixel graphics).
    pub sixel: bool,
    /// The kitty graphics query was acknowledged with OK.
    pub kitty: bool,
    /// Cell size in pixels (width, height), from `CSI 16 t`.
    pub cell: Option<(u16, u16)>,
    /// The XTVERSION reply, e.g. "kitty(0.26.5)" or "XTerm(379)".
    pub version: Option<String>,
}

/// Image id of the kitty query; the reply names it.
const KITTY_QUERY_ID: u32 = 31;

/// The queries, in the order the replies come back; the status report goes last.
pub fn query_sequence() -> String {
    format!("\x1b_Gi={KITTY_QUERY_ID},s=1,v=1,a=q,t=d,f=24;AAAA\x1b\\\x1b[>0q\x1b[16t\x1b[c\x1b[5n")
}

/// Sends the queries (through `mux`) and reads the replies from `input` until the status report
/// or `timeout`. `Ok(None)`: nothing complete came back in time. An error: the terminal went
/// away.
pub fn ask(
    out: &mut impl Write,
    input: RawFd,
    mux: Multiplexer,
    timeout: Duration,
) -> Result<Option<Answers>> {
    out.write_all(mux.wrap(&query_sequence()).as_bytes())?;
    out.flush()?;
    let deadline = Instant::now() + timeout;
    let mut parser = Parser::default();
    let mut buf = [0u8; 256];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            discard_pending_input(input);
            return Ok(None);
        }
        match wait_for_input(input, left) {
            Input::Quiet => continue,
            Input::HungUp => bail!("the terminal went away"),
            Input::Ready => {}
        }
        // SAFETY: reads at most buf.len() bytes into buf.
        let n = unsafe { libc::read(input, buf.as_mut_ptr().cast(), buf.len()) };
        if n < 0 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
            continue;
        }
        if n <= 0 {
            bail!("the terminal went away");
        }
        for &b in &buf[..n as usize] {
            if parser.push(b) {
                return Ok(Some(parser.answers));
            }
        }
    }
}

/// Drops input the terminal has sent but nobody read: half a late reply must not become keys.
fn discard_pending_input(input: RawFd) {
    // SAFETY: tcflush on a file descriptor; an error (not a terminal) is ignored.
    unsafe {
        libc::tcflush(input, libc::TCIFLUSH);
    }
}

/// Splits the reply stream into escape sequences and reads the ones the query asked for.
#[derive(Debug, Default)]
pub struct Parser {
    state: State,
    body: Vec<u8>,
    pub answers: Answers,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Between sequences (anything else, e.g. a key pressed meanwhile, is skipped).
    #[default]
    Ground,
    /// After ESC.
    Escape,
    /// `ESC [`, up to a final byte.
    Csi,
    /// `ESC P` (DCS) or `ESC _` (APC) up to `ESC \`.
    Text,
    /// ESC inside a DCS or APC.
    TextEscape,
}

/// Replies longer than this are not ours; the parser starts over.
const MAX_BODY: usize = 512;

impl Parser {
    /// Takes one byte; true once the status report (the last reply) has arrived.
    pub fn push(&mut self, b: u8) -> bool {
        if self.body.len() > MAX_BODY {
            self.body.clear();
            self.state = State::Ground;
        }
        match self.state {
            State::Ground => {
                if b == 0x1b {
                    self.state = State::Escape;
                }
            }
            State::Escape => {
                self.body.clear();
                self.state = match b {
                    b'[' => State::Csi,
                    b'P' | b'_' => {
                        self.body.push(b);
                        State::Text
                    }
                    0x1b => State::Escape,
                    _ => State::Ground,
                };
            }
            State::Csi => {
                if (0x40..=0x7e).contains(&b) {
                    self.state = State::Ground;
                    return self.csi(b);
                }
                self.body.push(b);
            }
            State::Text => {
                if b == 0x1b {
                    self.state = State::TextEscape;
                } else {
                    self.body.push(b);
                }
            }
            State::TextEscape => {
                if b == b'\\' {
                    self.text();
                    self.state = State::Ground;
                } else {
                    self.body.push(0x1b);
                    self.body.push(b);
                    self.state = State::Text;
                }
            }
        }
        false
    }

    /// A CSI reply with final byte `last`; true for the status report.
    fn csi(&mut self, last: u8) -> bool {
        let body = String::from_utf8_lossy(&self.body).into_owned();
        match last {
            b'n' => return body == "0" || body == "3",
            b'c' => {
                if let Some(params) = body.strip_prefix('?') {
                    self.answers.sixel |= params.split(';').any(|p| p == "4");
                }
            }
            b't' => {
                let parts: Vec<&str> = body.split(';').collect();
                if let ["6", h, w] = parts[..] {
                    if let (Ok(h), Ok(w)) = (h.parse::<u16>(), w.parse::<u16>()) {
                        if h > 0 && w > 0 {
                            self.answers.cell = Some((w, h));
                        }
                    }
                }
            }
            _ => {}
        }
        false
    }

    /// A DCS (`P...`) or APC (`_...`) reply.
    fn text(&mut self) {
        let body = String::from_utf8_lossy(&self.body).into_owned();
        if let Some(version) = body.strip_prefix("P>|") {
            self.answers.version = Some(version.to_string());
        } else if let Some(kitty) = body.strip_prefix("_G") {
            let (keys, message) = kitty.split_once(';').unwrap_or((kitty, ""));
            if keys.split(',').any(|k| k == format!("i={KITTY_QUERY_ID}")) && message == "OK" {
                self.answers.kitty = true;
            }
        }
    }
}

/// Parses a whole reply stream (for tests): the answers and whether the status report came.
pub fn parse(bytes: &[u8]) -> (Answers, bool) {
    let mut p = Parser::default();
    let done = bytes.iter().any(|&b| p.push(b));
    (p.answers, done)
}
