//! Choosing the graphics protocol: the terminal's replies parsed, the decision for each kind of
//! terminal and multiplexer, tmux's passthrough, and the picture's fit in the pane.

use convscope::tui::graphics::choice::{decide, kitty_placeholders, Hints, ProtocolChoice};
use convscope::tui::graphics::encoder::{fit, MAX_PIXELS};
use convscope::tui::graphics::multiplexer::{
    parse_passthrough, tmux_passthrough, Multiplexer, Passthrough,
};
use convscope::tui::graphics::probe::{parse, query_sequence, Answers};
use ratatui::layout::Size;
use ratatui_image::picker::ProtocolType;

const XTERM_VT340: &[u8] =
    b"\x1bP>|XTerm(379)\x1b\\\x1b[6;20;10t\x1b[?63;1;2;4;6;9;15;16;22;28c\x1b[0n";
const KITTY_026: &[u8] =
    b"\x1b_Gi=31;OK\x1b\\\x1bP>|kitty(0.26.5)\x1b\\\x1b[6;17;8t\x1b[?62;c\x1b[0n";
const KITTY_035: &[u8] =
    b"\x1b_Gi=31;OK\x1b\\\x1bP>|kitty(0.35.2)\x1b\\\x1b[6;17;8t\x1b[?62;c\x1b[0n";
const PLAIN_XTERM: &[u8] = b"\x1bP>|XTerm(379)\x1b\\\x1b[6;20;10t\x1b[?1;2c\x1b[0n";

fn answers(bytes: &[u8]) -> Answers {
    let (a, done) = parse(bytes);
    assert!(done, "the status report closes the replies");
    a
}

#[test]
fn replies_are_parsed() {
    let a = answers(XTERM_VT340);
    assert!(a.sixel && !a.kitty);
    assert_eq!(a.cell, Some((10, 20)));
    assert_eq!(a.version.as_deref(), Some("XTerm(379)"));
    let k = answers(KITTY_026);
    assert!(k.kitty && !k.sixel);
    assert_eq!(k.cell, Some((8, 17)));
    // A kitty error reply is not support.
    let (e, _) = parse(b"\x1b_Gi=31;ENOTSUPPORTED:no\x1b\\\x1b[0n");
    assert!(!e.kitty);
    // Keys typed while the replies come are skipped, and without the status report the replies
    // are not complete.
    let (a, done) = parse(b"jj\x1b[?62;4c");
    assert!(a.sixel && !done);
    // The query ends with the status report every terminal answers.
    assert!(query_sequence().ends_with("\x1b[5n"));
}

fn auto(mux: Multiplexer, bytes: Option<&[u8]>) -> (ProtocolType, bool, Option<String>) {
    let a = bytes.map(answers);
    let d = decide(
        ProtocolChoice::Auto,
        mux,
        a.as_ref(),
        &Hints::default(),
        500,
    );
    (d.protocol, d.tmux, d.note)
}

#[test]
fn each_terminal_gets_what_it_draws() {
    assert_eq!(
        auto(Multiplexer::None, Some(XTERM_VT340)),
        (ProtocolType::Sixel, false, None)
    );
    assert_eq!(
        auto(Multiplexer::None, Some(PLAIN_XTERM)),
        (ProtocolType::Halfblocks, false, None)
    );
    assert_eq!(
        auto(Multiplexer::None, Some(KITTY_035)),
        (ProtocolType::Kitty, false, None)
    );
    // kitty 0.26 lacks the Unicode placeholders the kitty encoder uses.
    let (p, _, note) = auto(Multiplexer::None, Some(KITTY_026));
    assert_eq!(p, ProtocolType::Halfblocks);
    assert!(note.unwrap().contains("kitty(0.26.5)"));
    assert!(kitty_placeholders("kitty(0.28.0)") && !kitty_placeholders("kitty(0.27.1)"));
    assert!(kitty_placeholders("ghostty 1.1.0") && !kitty_placeholders("WezTerm 2024"));
}

#[test]
fn tmux_passes_pictures_only_when_allowed_and_says_so() {
    assert_eq!(
        auto(Multiplexer::Tmux(Passthrough::On), Some(XTERM_VT340)),
        (ProtocolType::Sixel, true, None)
    );
    let (p, _, note) = auto(Multiplexer::Tmux(Passthrough::Off), None);
    assert_eq!(p, ProtocolType::Halfblocks);
    assert!(note.unwrap().contains("set -g allow-passthrough on"));
    // Detached, or an outer terminal that never answers: half blocks and a way out.
    let (p, _, note) = auto(Multiplexer::Tmux(Passthrough::Unknown), None);
    assert_eq!(p, ProtocolType::Halfblocks);
    assert!(note.unwrap().contains("did not answer"));
    let (p, _, note) = auto(Multiplexer::Screen, None);
    assert_eq!(p, ProtocolType::Halfblocks);
    assert!(note.unwrap().contains("screen"));
    // A forced protocol is kept, with the cell size the terminal reported.
    let a = answers(XTERM_VT340);
    let d = decide(
        ProtocolChoice::Kitty,
        Multiplexer::Tmux(Passthrough::On),
        Some(&a),
        &Hints::default(),
        500,
    );
    assert_eq!(
        (d.protocol, d.cell, d.tmux, d.note),
        (ProtocolType::Kitty, (10, 20), true, None)
    );
}

#[test]
fn tmux_passthrough_doubles_every_escape() {
    assert_eq!(
        tmux_passthrough("\x1b[c\x1bPq#0\x1b\\"),
        "\x1bPtmux;\x1b\x1b[c\x1b\x1bPq#0\x1b\x1b\\\x1b\\"
    );
    assert_eq!(
        Multiplexer::Tmux(Passthrough::On).wrap("\x1b[c"),
        "\x1bPtmux;\x1b\x1b[c\x1b\\"
    );
    assert_eq!(Multiplexer::None.wrap("\x1b[c"), "\x1b[c");
    assert_eq!(parse_passthrough("on\n"), Passthrough::On);
    assert_eq!(parse_passthrough("all\n"), Passthrough::On);
    assert_eq!(parse_passthrough("off\n"), Passthrough::Off);
    assert_eq!(parse_passthrough(""), Passthrough::Unknown);
}

#[test]
fn pictures_fill_the_pane_with_their_aspect() {
    // Exactly the pane.
    assert_eq!(
        fit(40, 24, Size::new(20, 12), (2, 2), false),
        ((40, 24), Size::new(20, 12))
    );
    // A square map in a wide pane of 10x20 cells: height-bound, 400 px high, 40 cells wide.
    assert_eq!(
        fit(8, 8, Size::new(100, 20), (10, 20), false),
        ((400, 400), Size::new(40, 20))
    );
    // Half blocks: one pixel wide, two high per cell.
    assert_eq!(
        fit(96, 96, Size::new(80, 30), (1, 2), false),
        ((60, 60), Size::new(60, 30))
    );
    // Never outside the pane, never empty.
    let ((w, h), cells) = fit(5000, 3, Size::new(7, 3), (9, 17), false);
    assert!(w <= 63 && h >= 1 && cells.width <= 7 && cells.height == 1);
    // A pane of 4.7 megapixels (16x32-pixel cells): the picture keeps to the pixel budget; a
    // sixel covers fewer cells, a kitty picture is stretched over the full size.
    let ((w, h), cells) = fit(1792, 1792, Size::new(97, 145), (16, 32), false);
    assert!(
        w * h <= MAX_PIXELS && w >= 1000 && w.abs_diff(h) <= 1,
        "{w}x{h}"
    );
    assert_eq!(
        cells,
        Size::new(w.div_ceil(16) as u16, h.div_ceil(32) as u16)
    );
    let (_, cells) = fit(1792, 1792, Size::new(97, 145), (16, 32), true);
    assert_eq!(cells, Size::new(97, 49));
}
