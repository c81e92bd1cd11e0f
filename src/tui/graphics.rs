//! Images in the terminal: protocol choice (queried, configured or forced) and the encoded
//! image of the view pane, kept until the picture or the pane changes.

use anyhow::Result;
use image::{DynamicImage, RgbImage};
use ratatui::layout::Rect;
use ratatui::Frame;
use ratatui_image::picker::{Picker, ProtocolType};
use ratatui_image::protocol::Protocol;
use ratatui_image::{Image, Resize};

/// Which graphics protocol to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProtocolChoice {
    /// Ask the terminal (inside tmux too); half blocks when nothing better answers.
    #[default]
    Auto,
    Halfblocks,
    Sixel,
    Kitty,
    Iterm2,
}

pub struct Graphics {
    picker: Picker,
    /// The encoded picture: which picture (the view's generation), for which area.
    encoded: Option<(u64, Rect, Protocol)>,
}

impl Graphics {
    /// Must run before the event loop reads input (the query talks to the terminal).
    pub fn new(choice: ProtocolChoice) -> Graphics {
        let mut picker = match choice {
            ProtocolChoice::Auto => {
                Picker::from_query_stdio().unwrap_or_else(|_| Picker::halfblocks())
            }
            _ => Picker::halfblocks(),
        };
        let forced = match choice {
            ProtocolChoice::Auto | ProtocolChoice::Halfblocks => None,
            ProtocolChoice::Sixel => Some(ProtocolType::Sixel),
            ProtocolChoice::Kitty => Some(ProtocolType::Kitty),
            ProtocolChoice::Iterm2 => Some(ProtocolType::Iterm2),
        };
        if let Some(p) = forced {
            picker.set_protocol_type(p);
        }
        Graphics {
            picker,
            encoded: None,
        }
    }

    pub fn protocol_name(&self) -> String {
        format!("{:?}", self.picker.protocol_type()).to_lowercase()
    }

    /// Draws `image` into `area`, scaled up with nearest neighbour (feature maps are small) and
    /// down to fit.
    pub fn draw(&mut self, frame: &mut Frame, area: Rect, image: &RgbImage, id: u64) -> Result<()> {
        let stale = !matches!(&self.encoded, Some((i, a, _)) if *i == id && *a == area);
        if stale {
            let font = self.picker.font_size();
            let (tw, th) = (
                area.width as u32 * font.width as u32,
                area.height as u32 * font.height as u32,
            );
            // Nearest-neighbour up to the pane's pixel size keeps map pixels sharp.
            let factor = (tw as f32 / image.width().max(1) as f32)
                .min(th as f32 / image.height().max(1) as f32);
            let big = if factor > 1.0 {
                let (w, h) = (
                    (image.width() as f32 * factor) as u32,
                    (image.height() as f32 * factor) as u32,
                );
                image::imageops::resize(
                    image,
                    w.max(1),
                    h.max(1),
                    image::imageops::FilterType::Nearest,
                )
            } else {
                image.clone()
            };
            let protocol = self.picker.new_protocol(
                DynamicImage::ImageRgb8(big),
                area.as_size(),
                Resize::Fit(None),
            )?;
            self.encoded = Some((id, area, protocol));
        }
        if let Some((_, _, protocol)) = &self.encoded {
            frame.render_widget(Image::new(protocol), area);
        }
        Ok(())
    }
}
