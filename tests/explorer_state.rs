//! The explorer without a terminal: keys in, state out; and drawing into ratatui's TestBackend.

mod common;

use std::path::PathBuf;

use candle_core::Device;
use common::fixture;
use convscope::model::Model;
use convscope::tui::app::{Action, App};
use convscope::tui::graphics::Graphics;
use convscope::tui::view::{Mode, ViewContent, ViewState};
use convscope::tui::{apply, ui, worker::Reply};
use convscope::views::Rendered;
use convscope::viz::cam::CamMethod;
use convscope::viz::colormap::Colormap;
use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::backend::TestBackend;
use ratatui::Terminal;

fn model() -> Model {
    Model::open(&fixture("resnet50_small.safetensors"), None, &Device::Cpu).unwrap()
}

fn app(m: &Model) -> App {
    App::new(m, "cpu".into(), PathBuf::from("img.png"), Colormap::Viridis)
}

fn key(app: &mut App, code: KeyCode) -> Action {
    app.on_key(KeyEvent::new(code, KeyModifiers::NONE))
}

fn keys(app: &mut App, s: &str) {
    for c in s.chars() {
        key(app, KeyCode::Char(c));
    }
}

/// Opens img.png with the worker's reply carrying `logits`; returns the image's id.
fn opened(app: &mut App, logits: Vec<f32>) -> u64 {
    let id = app.opening(PathBuf::from("img.png"));
    apply(
        app,
        Reply::Opened {
            id,
            result: Ok(convscope::model::Prediction::new(
                &logits,
                convscope::model::Head::Softmax,
            )),
        },
    );
    id
}

fn screen(app: &App) -> String {
    let mut term = Terminal::new(TestBackend::new(110, 32)).unwrap();
    let mut g = Graphics::halfblocks();
    term.draw(|f| ui::draw(f, app, &mut g)).unwrap();
    let buf = term.backend().buffer().clone();
    (0..buf.area.height)
        .map(|y| {
            (0..buf.area.width)
                .map(|x| buf[(x, y)].symbol().to_string())
                .collect::<String>()
                + "\n"
        })
        .collect()
}

#[test]
fn moving_and_folding_the_tree() {
    let m = model();
    let mut a = app(&m);
    assert_eq!(
        a.selected_row().path,
        "conv1",
        "starts on the first convolution"
    );
    key(&mut a, KeyCode::Char('j'));
    key(&mut a, KeyCode::Down);
    key(&mut a, KeyCode::Down);
    key(&mut a, KeyCode::Down);
    assert_eq!(a.selected_row().path, "layer1");
    let rows = a.rows.len();
    key(&mut a, KeyCode::Char('l'));
    assert_eq!(a.rows.len(), rows + 3, "layer1 opens to its three blocks");
    key(&mut a, KeyCode::Right);
    key(&mut a, KeyCode::Char('l'));
    assert_eq!(a.selected_row().path, "layer1.0");
    key(&mut a, KeyCode::Char('j'));
    assert_eq!(a.selected_row().path, "layer1.0.conv1");
    key(&mut a, KeyCode::Char('h'));
    assert_eq!(
        a.selected_row().path,
        "layer1.0",
        "h on a leaf goes to its module, closed"
    );
    key(&mut a, KeyCode::Left);
    assert_eq!(a.selected_row().path, "layer1");
    key(&mut a, KeyCode::Char('h'));
    assert_eq!(a.rows.len(), rows);
    key(&mut a, KeyCode::Char('G'));
    assert_eq!(a.selected_row().path, "fc");
    key(&mut a, KeyCode::Char('g'));
    assert_eq!(a.selected_row().path, "input");
}

#[test]
fn modes_pages_classes_methods_and_search() {
    let m = model();
    let mut a = app(&m);
    assert_eq!(a.mode, Mode::Activations);
    key(&mut a, KeyCode::Tab);
    assert_eq!(a.mode, Mode::Cam);
    keys(&mut a, "4");
    assert_eq!(a.mode, Mode::Info);
    keys(&mut a, "1");
    key(&mut a, KeyCode::Enter);
    assert_eq!(a.channel, Some(0));
    keys(&mut a, "]]");
    assert_eq!(a.channel, Some(2));
    key(&mut a, KeyCode::Esc);
    assert_eq!(a.channel, None);
    keys(&mut a, "m");
    assert_eq!((a.mode, a.method), (Mode::Cam, CamMethod::Gradcamplusplus));
    keys(&mut a, "c7");
    key(&mut a, KeyCode::Enter);
    assert_eq!(a.class, Some(7));
    keys(&mut a, "cclass 3");
    key(&mut a, KeyCode::Enter);
    assert_eq!(a.class, Some(3));
    keys(&mut a, "cnothing");
    key(&mut a, KeyCode::Enter);
    assert_eq!(a.class, Some(3));
    assert!(a.status.contains("unknown class"), "{}", a.status);
    keys(&mut a, "/layer3.4.conv2");
    key(&mut a, KeyCode::Enter);
    assert_eq!(a.selected_row().path, "layer3.4.conv2");
    // In CAM mode `p` cycles the CAM's colormap (jet first, as pytorch-grad-cam draws), not
    // the activations'; any colormap can be had, viridis included.
    keys(&mut a, "p");
    assert_eq!(
        (a.cam_colormap, a.colormap),
        (Colormap::Gray, Colormap::Viridis)
    );
    assert_eq!(a.wanted_view().colormap, Colormap::Gray);
    keys(&mut a, "p");
    assert_eq!(a.wanted_view().colormap, Colormap::Viridis);
    assert_eq!(key(&mut a, KeyCode::Char('s')), Action::Save);
    keys(&mut a, "o");
    keys(&mut a, "x.png");
    assert_eq!(
        key(&mut a, KeyCode::Enter),
        Action::Open(PathBuf::from("x.png"))
    );
    assert_eq!(key(&mut a, KeyCode::Char('q')), Action::Quit);
}

#[test]
fn the_screen_shows_tree_tabs_status_and_help() {
    let m = model();
    let mut a = app(&m);
    let s = screen(&a);
    assert!(s.contains("conv1 conv2d 4x112x112"), "{s}");
    assert!(
        s.contains("1 Activations")
            && s.contains("2 CAM")
            && s.contains("3 Filters")
            && s.contains("4 Info"),
        "{s}"
    );
    assert!(s.contains("cpu | resnet50_small | img.png"), "{s}");
    assert!(s.contains("loading img.png"), "{s}");
    keys(&mut a, "?");
    let s = screen(&a);
    assert!(
        s.contains("keys (any key closes)")
            && s.contains("save the view as PNG")
            && s.contains("first / last layer"),
        "{s}"
    );
    keys(&mut a, "x");
    assert!(!a.help);
}

#[test]
fn worker_replies_fill_the_predictions_and_the_view() {
    let m = model();
    let mut a = app(&m);
    let id = opened(&mut a, vec![0.0, 3.0, 1.0, 0., 0., 0., 0., 0., 0., 0.]);
    let key = a.wanted_view();
    apply(
        &mut a,
        Reply::View {
            key: key.clone(),
            result: Ok(ViewContent::Text("layer statistics here".into())),
            elapsed: std::time::Duration::from_millis(12),
        },
    );
    let s = screen(&a);
    assert!(s.contains("1. class 1"), "{s}");
    assert!(
        s.contains("layer statistics here") && s.contains("last 12 ms"),
        "{s}"
    );
    apply(
        &mut a,
        Reply::View {
            key,
            result: Err("layer has NaN".into()),
            elapsed: Default::default(),
        },
    );
    assert!(matches!(a.view, ViewState::Failed { .. }));
    assert!(screen(&a).contains("error: layer has NaN"));
    // An image that fails to open leaves the previous one in place, with the error shown.
    let id2 = a.opening(PathBuf::from("broken.png"));
    apply(
        &mut a,
        Reply::Opened {
            id: id2,
            result: Err("cannot decode image broken.png".into()),
        },
    );
    assert_eq!(
        (a.image_id, a.image_path.clone()),
        (id, PathBuf::from("img.png"))
    );
    assert!(a.prediction.is_some());
    let s = screen(&a);
    assert!(
        s.contains("error: cannot decode image broken.png") && s.contains("1. class 1"),
        "{s}"
    );
}

#[test]
fn a_first_image_that_fails_to_open_says_so_in_place() {
    // No earlier image to fall back on: the error stays on screen, not "loading ..." and
    // "computing ..." forever.
    let m = model();
    let mut a = app(&m);
    let id = a.opening(PathBuf::from("missing.png"));
    apply(
        &mut a,
        Reply::Opened {
            id,
            result: Err("cannot read image missing.png".into()),
        },
    );
    let s = screen(&a);
    assert!(
        s.contains("error: cannot read image missing.png; press o to open an image")
            && s.contains("no image open")
            && !s.contains("computing")
            && !s.contains("loading"),
        "{s}"
    );
}

#[test]
fn v_compares_cams_by_class_then_by_method_then_stops() {
    use convscope::views::compare::CompareBy;
    let m = model();
    let mut a = app(&m);
    assert_eq!(a.wanted_view().compare, None);
    keys(&mut a, "v");
    assert_eq!(a.mode, Mode::Cam);
    assert_eq!(a.wanted_view().compare, Some(CompareBy::Classes));
    keys(&mut a, "v");
    assert_eq!(a.wanted_view().compare, Some(CompareBy::Methods));
    // Other modes never carry it.
    keys(&mut a, "1");
    assert_eq!(a.wanted_view().compare, None);
    keys(&mut a, "2v");
    assert_eq!(a.wanted_view().compare, None);
}

#[test]
fn a_tiny_terminal_says_so() {
    let m = model();
    let a = app(&m);
    let mut term = Terminal::new(TestBackend::new(40, 10)).unwrap();
    let mut g = Graphics::halfblocks();
    term.draw(|f| ui::draw(f, &a, &mut g)).unwrap();
    let buf = term.backend().buffer().clone();
    let text: String = (0..buf.area.width)
        .map(|x| buf[(x, 0)].symbol().to_string())
        .collect();
    assert!(text.starts_with("terminal too small"), "{text}");
}

#[test]
fn a_view_on_its_way_replaces_the_old_caption_whole() {
    let m = model();
    let mut a = app(&m);
    opened(&mut a, vec![0.0; 10]);
    let key = a.wanted_view();
    apply(
        &mut a,
        Reply::View {
            key,
            result: Ok(ViewContent::Picture(Rendered {
                picture: image::RgbImage::new(8, 8),
                caption: "Grad-CAM for 'centipede' (logit 44.52) at layer4.2.relu3".into(),
                what: "gradcam".into(),
                chunks: Vec::new(),
                of_image: true,
            })),
            elapsed: Default::default(),
        },
    );
    assert!(screen(&a).contains("Grad-CAM for 'centipede'"));
    // Moving on: the picture stays until the next one comes, the caption says it is coming.
    keys(&mut a, "j");
    let s = screen(&a);
    let line = s.lines().find(|l| l.contains("computing ...")).expect(&s);
    assert!(
        !line.contains("centipede") && !line.contains("logit"),
        "{line}"
    );
}
