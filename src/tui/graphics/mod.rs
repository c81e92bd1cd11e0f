//! Pictures in the terminal: which protocol ([`choice`], from the terminal's [`probe`] answers
//! and the [`multiplexer`] in between), encoding off the UI thread ([`encoder`]), and drawing the
//! newest encoded picture into the view pane.

pub mod choice;
pub mod encoder;
pub mod multiplexer;
pub mod probe;

use std::io::Write;
use std::os::fd::RawFd;
use std::time::Duration;

use anyhow::Result;
use image::RgbImage;
use ratatui::layout::Rect;
use ratatui::widgets::Clear;
use ratatui::Frame;
use ratatui_image::picker::ProtocolType;
use ratatui_image::protocol::Protocol;
use ratatui_image::Image;

pub use choice::ProtocolChoice;
use choice::{decide, needs_query, Decision, Hints};
use encoder::{Encoder, Slot, Target};
use multiplexer::Multiplexer;

/// How long the terminal has to answer the graphics query.
pub const QUERY_TIMEOUT: Duration = Duration::from_millis(500);

pub struct Graphics {
    decision: Decision,
    encoder: Encoder,
    /// The newest finished encoding, not yet on screen.
    ready: Option<(Slot, Result<Protocol, String>)>,
    /// The picture on screen and the slot it was made for.
    displayed: Option<(Slot, Protocol)>,
    /// Leave the picture out of the next frame, so the one after writes it again whole
    /// (a sixel under a closed popup is otherwise never redrawn).
    blank_next: bool,
}

impl Graphics {
    /// Asks the terminal (on `out` / `input`, in raw mode) what it draws, unless `choice`
    /// settles it; bounded by [`QUERY_TIMEOUT`]. An error: the terminal went away.
    pub fn detect(choice: ProtocolChoice, out: &mut impl Write, input: RawFd) -> Result<Graphics> {
        let mux = Multiplexer::detect();
        let answers = if needs_query(choice, mux) {
            probe::ask(out, input, mux, QUERY_TIMEOUT)?
        } else {
            None
        };
        let hints = Hints::from_env();
        Ok(Graphics::from_decision(decide(
            choice,
            mux,
            answers.as_ref(),
            &hints,
            QUERY_TIMEOUT.as_millis() as u64,
        )))
    }

    pub fn from_decision(decision: Decision) -> Graphics {
        let target = Target {
            protocol: decision.protocol,
            cell: decision.cell,
            tmux: decision.tmux,
            kitty_id: rand::random::<u32>() | 1,
        };
        Graphics {
            decision,
            encoder: Encoder::spawn(target),
            ready: None,
            displayed: None,
            blank_next: false,
        }
    }

    /// Half blocks, without asking anything (tests, and terminals known to need nothing more).
    pub fn halfblocks() -> Graphics {
        Graphics::from_decision(Decision {
            protocol: ProtocolType::Halfblocks,
            cell: choice::DEFAULT_CELL,
            tmux: false,
            note: None,
        })
    }

    pub fn protocol_name(&self) -> String {
        format!("{:?}", self.decision.protocol).to_lowercase()
    }

    /// Why the pictures are not what the user may expect, once, for the status line.
    pub fn note(&self) -> Option<&str> {
        self.decision.note.as_deref()
    }

    /// Takes the newest finished encoding, if one came back.
    pub fn poll(&mut self) {
        if let Some(e) = self.encoder.take() {
            self.ready = Some((e.slot, e.result));
        }
    }

    /// Whether a picture is being encoded.
    pub fn busy(&self) -> bool {
        self.encoder.in_flight.is_some()
    }

    /// Writes the picture again in full on the frame after next (see `blank_next`).
    pub fn repaint(&mut self) {
        self.blank_next = true;
    }

    /// Draws picture `generation` into `area`: the encoding for it if done, else asks for it and
    /// keeps the previous picture meanwhile. A picture that is no longer `wanted` (the user has
    /// moved on and its successor is being computed) is not encoded or sent: holding a key sends
    /// nothing until the view settles.
    pub fn draw(
        &mut self,
        frame: &mut Frame,
        area: Rect,
        image: &RgbImage,
        generation: u64,
        wanted: bool,
    ) {
        let slot = Slot {
            generation,
            area: area.as_size(),
        };
        if self.blank_next {
            self.blank_next = false;
            frame.render_widget(Clear, area);
            return;
        }
        if wanted && matches!(&self.ready, Some((s, _)) if *s == slot) {
            match self.ready.take() {
                Some((s, Ok(protocol))) => self.displayed = Some((s, protocol)),
                Some((_, Err(e))) => {
                    frame.render_widget(
                        ratatui::widgets::Paragraph::new(format!("cannot draw the image: {e}")),
                        area,
                    );
                    self.ready = Some((slot, Err(e)));
                    return;
                }
                None => {}
            }
        }
        // The picture on screen stays (same pane size) until the wanted one is encoded: no blank
        // frame between two pictures.
        match &self.displayed {
            Some((s, protocol)) if s.area == slot.area => render(frame, area, protocol),
            Some(_) | None => {}
        }
        let up_to_date = matches!(&self.displayed, Some((s, _)) if *s == slot);
        if wanted && !up_to_date {
            self.encoder.request(slot, image);
        }
    }
}

/// Renders an encoded picture at the top left of `area`.
fn render(frame: &mut Frame, area: Rect, protocol: &Protocol) {
    let size = protocol.size();
    let at = Rect {
        width: size.width.min(area.width),
        height: size.height.min(area.height),
        ..area
    };
    frame.render_widget(Image::new(protocol), at);
}
