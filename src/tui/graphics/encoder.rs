//! Turning a picture into the escape sequences of the chosen protocol, on a thread of its own:
//! the UI thread hands over the newest picture and never waits; a request overtaken by a newer
//! one before it started is dropped.

use std::sync::mpsc::{self, Receiver, Sender};

use anyhow::Result;
use image::{DynamicImage, RgbImage};
use ratatui::layout::Size;
use ratatui_image::picker::ProtocolType;
use ratatui_image::protocol::halfblocks::Halfblocks;
use ratatui_image::protocol::iterm2::Iterm2;
use ratatui_image::protocol::kitty::Kitty;
use ratatui_image::protocol::sixel::Sixel;
use ratatui_image::protocol::Protocol;

/// Where the picture goes: protocol, the terminal's cell size in pixels, tmux wrapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target {
    pub protocol: ProtocolType,
    pub cell: (u16, u16),
    pub tmux: bool,
    /// The kitty image id: one per explorer, so each new picture replaces the last one in the
    /// terminal's memory.
    pub kitty_id: u32,
}

impl Target {
    /// Pixels of the encoded picture per cell: half blocks are one pixel wide and two high.
    fn pixels_per_cell(&self) -> (u32, u32) {
        match self.protocol {
            ProtocolType::Halfblocks => (1, 2),
            ProtocolType::Sixel | ProtocolType::Kitty | ProtocolType::Iterm2 => {
                (self.cell.0.max(1) as u32, self.cell.1.max(1) as u32)
            }
        }
    }
}

/// Most pixels an encoded picture has. A pane on a large screen can be several megapixels, and
/// sending that for every picture (a sixel is about a byte a pixel, kitty's RGBA more than four)
/// holds up the screen for tens of milliseconds locally and far longer over SSH; kitty and iTerm2
/// scale a smaller picture up to the pane themselves.
pub const MAX_PIXELS: u32 = 1 << 20;

/// The largest size with the picture's aspect that fits `area` cells of `per_cell` pixels: the
/// pixels to encode (at most [`MAX_PIXELS`]) and the cells they cover. `scaled_by_terminal`:
/// the terminal stretches the picture over its cells (kitty, iTerm2), so a picture shrunk to
/// the pixel budget still covers the cells of the full size; a sixel covers its own pixels.
pub fn fit(
    width: u32,
    height: u32,
    area: Size,
    per_cell: (u32, u32),
    scaled_by_terminal: bool,
) -> ((u32, u32), Size) {
    let (aw, ah) = (
        area.width as u32 * per_cell.0,
        area.height as u32 * per_cell.1,
    );
    let scale = (aw as f64 / width.max(1) as f64).min(ah as f64 / height.max(1) as f64);
    let sized = |scale: f64| {
        (
            ((width as f64 * scale).floor() as u32).clamp(1, aw.max(1)),
            ((height as f64 * scale).floor() as u32).clamp(1, ah.max(1)),
        )
    };
    let cells = |(w, h): (u32, u32)| {
        Size::new(
            w.div_ceil(per_cell.0).min(area.width as u32) as u16,
            h.div_ceil(per_cell.1).min(area.height as u32) as u16,
        )
    };
    let full = sized(scale);
    let budget = (MAX_PIXELS as f64 / (full.0 as f64 * full.1 as f64)).sqrt();
    if budget >= 1.0 {
        return (full, cells(full));
    }
    let small = sized(scale * budget);
    (small, cells(if scaled_by_terminal { full } else { small }))
}

/// Encodes `image` to fill as much of `area` as its aspect allows: nearest neighbour up (map
/// pixels stay sharp), a triangle filter down.
pub fn encode(image: &RgbImage, area: Size, target: &Target) -> Result<Protocol> {
    let scaled_by_terminal = match target.protocol {
        ProtocolType::Kitty | ProtocolType::Iterm2 => true,
        ProtocolType::Halfblocks | ProtocolType::Sixel => false,
    };
    let ((w, h), cells) = fit(
        image.width(),
        image.height(),
        area,
        target.pixels_per_cell(),
        scaled_by_terminal,
    );
    let filter = if w >= image.width() {
        image::imageops::FilterType::Nearest
    } else {
        image::imageops::FilterType::Triangle
    };
    let sized = if (w, h) == image.dimensions() {
        image.clone()
    } else {
        image::imageops::resize(image, w, h, filter)
    };
    let picture = DynamicImage::ImageRgb8(sized);
    Ok(match target.protocol {
        ProtocolType::Halfblocks => Protocol::Halfblocks(Halfblocks::new(picture, cells)?),
        ProtocolType::Sixel => Protocol::Sixel(Sixel::new(picture, cells, target.tmux)?),
        ProtocolType::Kitty => Protocol::Kitty(Kitty::new(
            picture,
            cells,
            target.kitty_id,
            target.tmux,
            false,
            false,
        )?),
        ProtocolType::Iterm2 => Protocol::ITerm2(Iterm2::new(picture, cells, target.tmux)?),
    })
}

/// Which picture, for which pane size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slot {
    pub generation: u64,
    pub area: Size,
}

pub struct Encoded {
    pub slot: Slot,
    pub result: Result<Protocol, String>,
}

struct Request {
    slot: Slot,
    image: RgbImage,
}

/// The encoding thread; it ends when this is dropped.
pub struct Encoder {
    requests: Sender<Request>,
    done: Receiver<Encoded>,
    /// The newest slot asked for and not yet back.
    pub in_flight: Option<Slot>,
}

impl Encoder {
    pub fn spawn(target: Target) -> Encoder {
        let (requests, jobs) = mpsc::channel::<Request>();
        let (results, done) = mpsc::channel();
        std::thread::spawn(move || {
            while let Ok(mut request) = jobs.recv() {
                while let Ok(newer) = jobs.try_recv() {
                    request = newer;
                }
                let result = encode(&request.image, request.slot.area, &target)
                    .map_err(|e| format!("{e:#}"));
                if results
                    .send(Encoded {
                        slot: request.slot,
                        result,
                    })
                    .is_err()
                {
                    return;
                }
            }
        });
        Encoder {
            requests,
            done,
            in_flight: None,
        }
    }

    /// Asks for `image` in `slot` unless that is already on its way.
    pub fn request(&mut self, slot: Slot, image: &RgbImage) {
        if self.in_flight == Some(slot) {
            return;
        }
        if self
            .requests
            .send(Request {
                slot,
                image: image.clone(),
            })
            .is_ok()
        {
            self.in_flight = Some(slot);
        }
    }

    /// The newest finished encoding, if any came back.
    pub fn take(&mut self) -> Option<Encoded> {
        let mut newest = None;
        while let Ok(e) = self.done.try_recv() {
            if self.in_flight == Some(e.slot) {
                self.in_flight = None;
            }
            newest = Some(e);
        }
        newest
    }
}
