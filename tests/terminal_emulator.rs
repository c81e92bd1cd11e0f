//! End to end in a real terminal emulator, as a person sees it: xterm `-ti vt340` (sixel) under
//! Xvfb, the explorer on its default `--protocol auto`, started directly and inside tmux (with
//! `allow-passthrough on`); screenshots of the window must show a picture drawn in pixels in the
//! view pane. Also: a detached tmux session reaches its first frame with a note, and the explorer
//! ends within a second when its terminal goes away (xterm closed, tmux session killed).
//! Needs Xvfb, xterm, tmux and ImageMagick's `import` (.ci/run installs them). Screenshots are
//! kept in target/terminal-shots/ for looking at.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use image::RgbImage;

/// One X server at a time: the tests share the display numbers.
static X: Mutex<()> = Mutex::new(());

struct Xvfb {
    display: String,
    server: Child,
}

impl Xvfb {
    fn start() -> Xvfb {
        let n = (0..200)
            .map(|i| 60 + (std::process::id() as usize + i) % 200)
            .find(|n| {
                !Path::new(&format!("/tmp/.X11-unix/X{n}")).exists()
                    && !Path::new(&format!("/tmp/.X{n}-lock")).exists()
            })
            .expect("a free display number");
        let server = Command::new("Xvfb")
            .arg(format!(":{n}"))
            .args(["-screen", "0", "1000x640x24", "-nolisten", "tcp"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("Xvfb is installed (see .ci/run)");
        let socket = format!("/tmp/.X11-unix/X{n}");
        wait_until(10.0, "Xvfb's socket", || Path::new(&socket).exists());
        Xvfb {
            display: format!(":{n}"),
            server,
        }
    }

    /// Starts `xterm -ti vt340` (140x40 cells of the 6x13 font) running `command` with `sh`.
    fn xterm(&self, command: &str) -> Child {
        Command::new("xterm")
            .env("DISPLAY", &self.display)
            .env_remove("TMUX")
            .env("TERM", "xterm")
            .args(["-ti", "vt340", "-fn", "6x13", "-geometry", "140x40+0+0"])
            .args(["-e", "sh", "-c", command])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("xterm is installed (see .ci/run)")
    }

    fn screenshot(&self, keep_as: &str) -> RgbImage {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("../terminal-shots");
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(keep_as);
        let ok = Command::new("import")
            .args(["-display", &self.display, "-window", "root"])
            .arg(&path)
            .status()
            .expect("ImageMagick's import is installed (see .ci/run)")
            .success();
        assert!(ok, "import failed");
        image::open(&path).unwrap().to_rgb8()
    }
}

impl Drop for Xvfb {
    fn drop(&mut self) {
        let _ = self.server.kill();
        let _ = self.server.wait();
    }
}

fn wait_until(seconds: f64, what: &str, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(
            start.elapsed().as_secs_f64() < seconds,
            "timed out after {seconds} s waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A picture drawn in pixels, not cells: vertical runs of three pixels with three different
/// colours. Half blocks never have them (a cell holds two colours, one above the other), nor
/// does text; a sixel picture has thousands. Counted in the view pane.
fn pixel_picture_score(pane: &RgbImage) -> (usize, usize) {
    let mut triples = 0;
    let mut colours = std::collections::HashSet::new();
    for x in 0..pane.width() {
        for y in 0..pane.height() - 2 {
            let (a, b, c) = (
                pane.get_pixel(x, y),
                pane.get_pixel(x, y + 1),
                pane.get_pixel(x, y + 2),
            );
            colours.insert(a.0);
            if a != b && b != c && a != c {
                triples += 1;
            }
        }
    }
    (triples, colours.len())
}

/// The view pane's pixels (right of column 56, rows 7 to 36 of the 6x13 font), below its tabs
/// and caption.
fn view_pane(shot: &RgbImage) -> RgbImage {
    let (cw, ch) = (6, 13);
    image::imageops::crop_imm(shot, 56 * cw, 7 * ch, 83 * cw, 29 * ch).to_image()
}

fn wait_for_picture(x: &Xvfb, keep_as: &str) {
    let start = Instant::now();
    loop {
        let shot = x.screenshot(keep_as);
        let (triples, colours) = pixel_picture_score(&view_pane(&shot));
        if triples > 2000 && colours > 32 {
            eprintln!("{keep_as}: {triples} three-colour runs, {colours} colours in the pane");
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "no picture in the view pane after 60 s ({triples} three-colour runs, {colours} \
             colours); see {keep_as}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// The explorer's process: the one whose command line holds `marker`.
fn explorer_pid(marker: &str) -> i32 {
    let mut found = None;
    wait_until(30.0, "the explorer's process", || {
        found = std::fs::read_dir("/proc")
            .unwrap()
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
            .find(|pid| {
                let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
                let cmd = String::from_utf8_lossy(&cmd);
                cmd.starts_with(env!("CARGO_BIN_EXE_convscope")) && cmd.contains(marker)
            });
        found.is_some()
    });
    found.unwrap()
}

/// Alive and not a zombie.
fn running(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            let state = s.rsplit(')').next().unwrap_or("").split_whitespace().next();
            !matches!(state, Some("Z") | Some("X") | None)
        })
        .unwrap_or(false)
}

/// Seconds of CPU (user + system) the process has used.
fn cpu_seconds(pid: i32) -> f64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = s.rsplit(')').next().unwrap().split_whitespace().collect();
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    ticks / 100.0
}

/// Does `what` (which takes the explorer's terminal away) and checks that process `pid` ends
/// within a second of it.
fn ends_within_a_second(pid: i32, what: &str, act: impl FnOnce()) {
    let start = Instant::now();
    act();
    while running(pid) && start.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(5));
    }
    let took = start.elapsed();
    eprintln!("{what}: the explorer ended after {} ms", took.as_millis());
    assert!(
        took < Duration::from_secs(1),
        "the explorer still ran {} ms after: {what}",
        took.as_millis()
    );
}

/// The demo model with a unique marker in its command line, writing nothing outside `dir`.
fn explorer_command(dir: &Path) -> (String, String) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let cfg = dir.join("config.toml");
    std::fs::write(&cfg, format!("output_dir = {:?}\n", dir.join("saved"))).unwrap();
    let marker = cfg.display().to_string();
    (
        format!(
            "{} {} {} --config {}",
            env!("CARGO_BIN_EXE_convscope"),
            root.join("models/shapes").display(),
            root.join("models/shapes/two_shapes.png").display(),
            cfg.display()
        ),
        marker,
    )
}

/// A tmux server of its own (socket `name`, `allow-passthrough` as given), killed when dropped.
struct Tmux {
    socket: String,
    conf: PathBuf,
}

impl Tmux {
    fn new(dir: &Path, name: &str, passthrough: &str) -> Tmux {
        let conf = dir.join(format!("{name}.tmux.conf"));
        std::fs::write(
            &conf,
            format!("set -g allow-passthrough {passthrough}\nset -g status off\n"),
        )
        .unwrap();
        Tmux {
            socket: format!("convscope-{name}-{}", std::process::id()),
            conf,
        }
    }

    /// The command line that starts this server's first session running `command`.
    fn new_session_command(&self, command: &str) -> String {
        format!(
            "tmux -L {} -f {} new-session '{command}'",
            self.socket,
            self.conf.display()
        )
    }

    fn run(&self, args: &[&str]) -> String {
        let out = Command::new("tmux")
            .args(["-L", &self.socket, "-f"])
            .arg(&self.conf)
            .args(args)
            .env_remove("TMUX")
            .output()
            .expect("tmux is installed (see .ci/run)");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        self.run(&["kill-server"]);
    }
}

#[test]
fn sixel_pictures_in_xterm_and_the_explorer_leaves_when_the_window_closes() {
    let _x = X.lock().unwrap_or_else(|e| e.into_inner());
    let x = Xvfb::start();
    let dir = tempfile::tempdir().unwrap();
    let (cmd, marker) = explorer_command(dir.path());
    let mut xterm = x.xterm(&format!("exec {cmd}"));
    wait_for_picture(&x, "xterm-direct.png");
    let pid = explorer_pid(&marker);

    // Closing the window hangs up the terminal under the explorer.
    ends_within_a_second(pid, "xterm closed", || unsafe {
        libc::kill(xterm.id() as i32, libc::SIGTERM);
    });
    let _ = xterm.wait();
}

#[test]
fn sixel_pictures_through_tmux_in_xterm() {
    let _x = X.lock().unwrap_or_else(|e| e.into_inner());
    let x = Xvfb::start();
    let dir = tempfile::tempdir().unwrap();
    let (cmd, marker) = explorer_command(dir.path());
    let tmux = Tmux::new(dir.path(), "xterm", "on");
    let mut xterm = x.xterm(&format!("exec {}", tmux.new_session_command(&cmd)));
    wait_for_picture(&x, "xterm-tmux.png");
    let pid = explorer_pid(&marker);

    // The help drawn over the picture and closed again leaves the picture as it was.
    let before = view_pane(&x.screenshot("xterm-tmux.png"));
    tmux.run(&["send-keys", "?"]);
    let mut open = before.clone();
    wait_until(10.0, "the help over the picture", || {
        open = view_pane(&x.screenshot("xterm-tmux-help.png"));
        open != before
    });
    tmux.run(&["send-keys", "x"]);
    let mut after = open.clone();
    let closed = (0..50).any(|_| {
        std::thread::sleep(Duration::from_millis(100));
        after = view_pane(&x.screenshot("xterm-tmux-help-closed.png"));
        after == before
    });
    let differing = before
        .pixels()
        .zip(after.pixels())
        .filter(|(a, b)| a != b)
        .count();
    assert!(
        closed,
        "{differing} pixels of the view pane differ after the help closed; see \
         xterm-tmux-help-closed.png"
    );

    // Closing the window detaches tmux's client: the explorer stays in its session, idle.
    unsafe { libc::kill(xterm.id() as i32, libc::SIGTERM) };
    let _ = xterm.wait();
    let before = cpu_seconds(pid);
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        running(pid),
        "the explorer stays in the detached tmux session"
    );
    let used = cpu_seconds(pid) - before;
    assert!(
        used < 0.5,
        "the detached explorer used {used} s of CPU in 2 s"
    );

    // Killing the session ends it.
    ends_within_a_second(pid, "tmux session killed", || {
        tmux.run(&["kill-server"]);
    });
}

#[test]
fn a_detached_tmux_session_gets_a_first_frame_and_a_note() {
    let dir = tempfile::tempdir().unwrap();
    let (cmd, marker) = explorer_command(dir.path());
    for (passthrough, note) in [
        ("on", "did not answer the graphics query"),
        ("off", "allow-passthrough is off"),
    ] {
        let tmux = Tmux::new(dir.path(), &format!("detached-{passthrough}"), passthrough);
        let start = Instant::now();
        tmux.run(&["new-session", "-d", "-x", "140", "-y", "40", &cmd]);
        let mut pane = String::new();
        wait_until(30.0, "the first frame", || {
            pane = tmux.run(&["capture-pane", "-p"]);
            pane.contains("1 Activations")
        });
        let first = start.elapsed();
        wait_until(10.0, "the note", || {
            pane = tmux.run(&["capture-pane", "-p"]);
            pane.contains(note)
        });
        eprintln!(
            "detached tmux, passthrough {passthrough}: first frame after {} ms",
            first.as_millis()
        );
        assert!(
            first < Duration::from_secs(1),
            "first frame after {} ms:\n{pane}",
            first.as_millis()
        );
        assert!(pane.contains("halfblocks"), "{pane}");
        let pid = explorer_pid(&marker);
        ends_within_a_second(pid, "detached tmux session killed", || {
            tmux.run(&["kill-session"]);
        });
    }
}
