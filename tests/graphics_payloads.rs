//! The sixel and kitty payloads drawn for a small image decode back to that image.

mod common;

use common::max_pixel_diff;
use convscope::tui::graphics::encoder::{encode, Target};
use image::{DynamicImage, Rgb, RgbImage};
use ratatui::buffer::Buffer;
use ratatui::layout::{Rect, Size};
use ratatui::widgets::Widget;
use ratatui_image::picker::ProtocolType;
use ratatui_image::Image;

/// An image of eight flat colours in blocks, so palette quantisation loses nothing.
fn test_image() -> RgbImage {
    let colours = [
        [255, 0, 0],
        [0, 255, 0],
        [0, 0, 255],
        [255, 255, 0],
        [0, 255, 255],
        [255, 0, 255],
        [255, 255, 255],
        [0, 0, 0],
    ];
    RgbImage::from_fn(40, 24, |x, y| {
        Rgb(colours[((x / 10) + 4 * (y / 12)) as usize % 8])
    })
}

/// The escape sequence the explorer's encoder puts in the image's first cell: a 20x12 pane of
/// 2x2-pixel cells, so the 40x24 image fills it without scaling.
fn payload(protocol: ProtocolType, tmux: bool) -> String {
    let target = Target {
        protocol,
        cell: (2, 2),
        tmux,
        kitty_id: 7,
    };
    let p = encode(&test_image(), Size::new(20, 12), &target).unwrap();
    assert_eq!(p.size(), Size::new(20, 12));
    let area = Rect::new(0, 0, 20, 12);
    let mut buf = Buffer::empty(area);
    Image::new(&p).render(area, &mut buf);
    buf[(0, 0)].symbol().to_string()
}

/// The sequence inside tmux's passthrough, checking that every ESC in it is doubled (a single one
/// ends the passthrough early and tmux draws nothing).
fn unwrap_tmux(seq: &str) -> String {
    let mut out = String::new();
    let mut rest = seq;
    while let Some(start) = rest.find("\x1bPtmux;") {
        out.push_str(&rest[..start]);
        let body = &rest[start + 7..];
        let mut chars = body.char_indices();
        let end = loop {
            match chars.next() {
                Some((i, '\x1b')) => match chars.next() {
                    Some((_, '\x1b')) => {}
                    Some((_, '\\')) => break i,
                    other => panic!("a single ESC inside the passthrough, then {other:?}"),
                },
                Some(_) => {}
                None => panic!("the passthrough is not closed"),
            }
        };
        out.push_str(&body[..end].replace("\x1b\x1b", "\x1b"));
        rest = &body[end + 2..];
    }
    out.push_str(rest);
    out
}

/// A minimal sixel decoder: colour registers in percent, six-pixel columns, `$`, `-`, `!n`.
fn decode_sixel(seq: &str) -> RgbImage {
    let start = seq.find("\x1bP").expect("a DCS sequence");
    let body = &seq[start..];
    let q = body.find('q').expect("sixel introducer");
    let data: Vec<char> = body[q + 1..body.find("\x1b\\").expect("string terminator")]
        .chars()
        .collect();
    let mut palette = std::collections::HashMap::new();
    let mut pixels: std::collections::HashMap<(u32, u32), [u8; 3]> =
        std::collections::HashMap::new();
    let (mut x, mut band, mut colour, mut i) = (0u32, 0u32, 0u32, 0usize);
    let number = |i: &mut usize| {
        let s = *i;
        while *i < data.len() && data[*i].is_ascii_digit() {
            *i += 1;
        }
        data[s..*i]
            .iter()
            .collect::<String>()
            .parse::<u32>()
            .unwrap_or(0)
    };
    let (mut width, mut height) = (0, 0);
    while i < data.len() {
        match data[i] {
            '"' => {
                i += 1;
                let mut nums = vec![number(&mut i)];
                while i < data.len() && data[i] == ';' {
                    i += 1;
                    nums.push(number(&mut i));
                }
                (width, height) = (nums[2], nums[3]);
            }
            '#' => {
                i += 1;
                let n = number(&mut i);
                if i < data.len() && data[i] == ';' {
                    let mut v = vec![];
                    while i < data.len() && data[i] == ';' {
                        i += 1;
                        v.push(number(&mut i));
                    }
                    assert_eq!(v[0], 2, "RGB colour space");
                    palette.insert(
                        n,
                        [v[1], v[2], v[3]].map(|p| (p as f32 * 255.0 / 100.0).round() as u8),
                    );
                }
                colour = n;
            }
            '$' => {
                x = 0;
                i += 1;
            }
            '-' => {
                x = 0;
                band += 1;
                i += 1;
            }
            c => {
                let mut repeat = 1;
                let mut c = c;
                if c == '!' {
                    i += 1;
                    repeat = number(&mut i);
                    c = data[i];
                }
                let bits = c as u32 - '?' as u32;
                for _ in 0..repeat {
                    for b in 0..6 {
                        if bits & (1 << b) != 0 {
                            pixels.insert((x, band * 6 + b), palette[&colour]);
                        }
                    }
                    x += 1;
                }
                i += 1;
            }
        }
    }
    RgbImage::from_fn(width, height, |x, y| {
        Rgb(*pixels.get(&(x, y)).unwrap_or(&[0, 0, 0]))
    })
}

/// Joins the base64 chunks of a kitty transmission and decodes the RGBA pixels.
fn decode_kitty(seq: &str) -> RgbImage {
    use base64::Engine;
    let mut bytes = Vec::new();
    let (mut w, mut h) = (0, 0);
    for part in seq.split("\x1b_G").skip(1) {
        let end = part.find("\x1b\\").expect("chunk terminator");
        let (params, data) = part[..end].split_once(';').expect("params;payload");
        for kv in params.split(',') {
            match kv.split_once('=') {
                Some(("s", v)) => w = v.parse().unwrap(),
                Some(("v", v)) => h = v.parse().unwrap(),
                Some(("f", v)) => assert_eq!(v, "32", "RGBA payload"),
                Some(("o", _)) => panic!("unexpected compression"),
                _ => {}
            }
        }
        bytes.extend(
            base64::engine::general_purpose::STANDARD
                .decode(data)
                .unwrap(),
        );
    }
    let rgba = image::RgbaImage::from_raw(w, h, bytes).expect("w*h*4 bytes");
    DynamicImage::ImageRgba8(rgba).to_rgb8()
}

#[test]
fn sixel_payload_decodes_to_the_image() {
    let decoded = decode_sixel(&payload(ProtocolType::Sixel, false));
    // Sixel colours are percentages: each channel within 255/100/2 of the original.
    assert!(
        max_pixel_diff(&decoded, &test_image()) <= 2,
        "sixel pixels differ"
    );
}

#[test]
fn kitty_payload_decodes_to_the_image() {
    let decoded = decode_kitty(&payload(ProtocolType::Kitty, false));
    assert_eq!(decoded, test_image());
}

#[test]
fn inside_tmux_the_payloads_are_wrapped_with_every_escape_doubled() {
    for protocol in [
        ProtocolType::Sixel,
        ProtocolType::Kitty,
        ProtocolType::Iterm2,
    ] {
        let plain = payload(protocol, false);
        let wrapped = payload(protocol, true);
        assert!(wrapped.contains("\x1bPtmux;"), "{protocol:?} is wrapped");
        let inner = unwrap_tmux(&wrapped);
        match protocol {
            ProtocolType::Sixel => assert!(
                max_pixel_diff(&decode_sixel(&inner), &test_image()) <= 2,
                "the sixel inside tmux's passthrough decodes to the image"
            ),
            ProtocolType::Kitty => assert_eq!(decode_kitty(&inner), test_image()),
            ProtocolType::Iterm2 | ProtocolType::Halfblocks => assert_eq!(inner, plain),
        }
    }
}
