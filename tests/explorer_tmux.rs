//! End to end: the real binary in tmux, driven by keys and signals, read from the pane: a tour
//! of the demo model, Ctrl-C cancelling a long job before it quits, SIGTERM and SIGHUP restoring
//! the terminal, and a soak of 500 random keys on a ResNet-layout model with its memory watched.
//! Needs tmux (.ci/run installs it).

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

struct Tmux {
    socket: String,
}

impl Tmux {
    fn run(&self, args: &[&str]) -> String {
        let out = Command::new("tmux")
            .arg("-L")
            .arg(&self.socket)
            .args(args)
            .output()
            .expect("tmux is installed (see .ci/run)");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The explorer's process id: the child of the pane's shell (found in /proc).
    fn explorer_pid(&self) -> i32 {
        let shell = self.run(&["display-message", "-p", "-t", "e2e", "#{pane_pid}"]);
        let shell: i32 = shell.trim().parse().unwrap();
        std::fs::read_dir("/proc")
            .unwrap()
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
            .find(|pid| {
                // Field 4 of /proc/PID/stat is the parent; the name before it is in parentheses.
                std::fs::read_to_string(format!("/proc/{pid}/stat"))
                    .ok()
                    .and_then(|s| {
                        s.rsplit(')')
                            .next()?
                            .split_whitespace()
                            .nth(1)?
                            .parse()
                            .ok()
                    })
                    == Some(shell)
            })
            .unwrap_or_else(|| panic!("no explorer under shell {shell}"))
    }

    fn pane(&self) -> String {
        self.run(&["capture-pane", "-p", "-t", "e2e"])
    }

    fn keys(&self, keys: &[&str]) {
        for k in keys {
            self.run(&["send-keys", "-t", "e2e", k]);
            std::thread::sleep(Duration::from_millis(60));
        }
    }

    /// Waits until the pane shows `text`; returns the pane.
    fn wait_for(&self, text: &str, seconds: u64) -> String {
        let start = Instant::now();
        loop {
            let pane = self.pane();
            if pane.contains(text) {
                return pane;
            }
            assert!(
                start.elapsed() < Duration::from_secs(seconds),
                "timed out waiting for '{text}'; the pane shows:\n{pane}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// Starts the explorer with `args` in a 140x40 tmux pane; the shell prints `EXIT=<status>` after.
fn start(args: &str) -> Tmux {
    let cmd = format!(
        "{} {args} --protocol halfblocks; echo EXIT=$?; sleep 60",
        env!("CARGO_BIN_EXE_convscope"),
    );
    static SESSIONS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = SESSIONS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let t = Tmux {
        socket: format!("convscope-e2e-{}-{n}", std::process::id()),
    };
    t.run(&[
        "new-session",
        "-d",
        "-s",
        "e2e",
        "-x",
        "140",
        "-y",
        "40",
        &cmd,
    ]);
    t
}

impl Drop for Tmux {
    fn drop(&mut self) {
        self.run(&["kill-server"]);
    }
}

#[test]
fn explore_the_demo_model_in_tmux() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("saved");
    let cfg = dir.path().join("config.toml");
    std::fs::write(&cfg, format!("output_dir = {out:?}\n")).unwrap();
    let t = start(&format!(
        "{} {} --config {}",
        root.join("models/shapes").display(),
        root.join("models/shapes/two_shapes.png").display(),
        cfg.display()
    ));

    let pane = t.wait_for("opened", 30);
    assert!(
        pane.contains("> ") && pane.contains("conv1 conv2d 16x96x96"),
        "{pane}"
    );
    assert!(pane.contains("1. "), "predictions on top:\n{pane}");
    t.wait_for("conv1: channels 0..16 of 16", 30);

    t.keys(&["/", "conv3", "Enter"]);
    t.wait_for("conv3: channels 0..64 of 64", 30);

    t.keys(&["Tab"]);
    t.wait_for("Grad-CAM for '", 30);
    t.keys(&["c", "#", "2", "Enter"]);
    let pane = t.wait_for("| class ", 10);
    assert!(
        !pane.contains("| class top"),
        "the class was picked:\n{pane}"
    );
    t.wait_for("Grad-CAM for '", 30);

    t.keys(&["s"]);
    let pane = t.wait_for("saved ", 10);
    let line = pane.lines().find(|l| l.contains("saved ")).unwrap();
    let path = line.trim().trim_start_matches("saved ").trim();
    let img = image::open(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    assert!(img.width() > 16 && img.height() > 16);
    assert!(path.contains("shapes_conv3_gradcam_"), "{path}");

    t.keys(&["m"]);
    t.wait_for("Grad-CAM++ for '", 30);

    t.keys(&["Tab"]);
    t.wait_for("filter patterns of channels 0..16", 120);

    t.keys(&["Tab"]);
    t.wait_for("op          conv2d", 30);

    t.keys(&["?"]);
    t.wait_for("keys (any key closes)", 10);
    t.keys(&["x"]);
    t.keys(&["q"]);
    let pane = t.wait_for("EXIT=", 20);
    assert!(pane.contains("EXIT=0"), "{pane}");
    assert!(
        !pane.contains("1 Activations"),
        "the terminal was not restored:\n{pane}"
    );
}

/// Resident memory of a process in MiB, from /proc.
fn rss_mib(pid: i32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace()
        .nth(1)
        .unwrap()
        .parse::<f64>()
        .unwrap()
        / 1024.0
}

fn fixture(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
        .display()
        .to_string()
}

/// The explorer on a fixture model and the demo's single-shape image, saving into a
/// temporary folder (kept alive by the returned guard).
fn explore_fixture(model: &str) -> (Tmux, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("config.toml");
    std::fs::write(
        &cfg,
        format!("output_dir = {:?}\n", dir.path().join("saved")),
    )
    .unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let t = start(&format!(
        "{} {} --config {}",
        fixture(model),
        root.join("models/shapes/single_shape.png").display(),
        cfg.display()
    ));
    (t, dir)
}

fn demo_args() -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    format!(
        "{} {}",
        root.join("models/shapes").display(),
        root.join("models/shapes/two_shapes.png").display()
    )
}

#[test]
fn ctrl_c_cancels_a_long_job_then_quits() {
    let t = start(&demo_args());
    t.wait_for("conv1: channels 0..16 of 16", 30);
    // Filter patterns of the last conv: a job with progress, long enough to interrupt.
    t.keys(&["/", "conv5", "Enter", "3"]);
    t.wait_for(" steps", 30);
    t.keys(&["C-c"]);
    let pane = t.wait_for("cancelled", 10);
    assert!(!pane.contains("EXIT="), "the first Ctrl-C quit:\n{pane}");
    t.keys(&["C-c"]);
    let pane = t.wait_for("EXIT=", 10);
    assert!(pane.contains("EXIT=0"), "{pane}");
}

#[test]
fn sigterm_and_sighup_restore_the_terminal() {
    for signal in ["TERM", "HUP"] {
        let t = start(&demo_args());
        t.wait_for("conv1: channels 0..16 of 16", 30);
        let pid = t.explorer_pid();
        let number = if signal == "TERM" {
            libc::SIGTERM
        } else {
            libc::SIGHUP
        };
        // SAFETY: sending a signal to a process this test started.
        assert_eq!(unsafe { libc::kill(pid, number) }, 0);
        let pane = t.wait_for("EXIT=", 10);
        assert!(pane.contains("EXIT=0"), "SIG{signal}:\n{pane}");
        assert!(
            !pane.contains("1 Activations"),
            "SIG{signal}: the terminal was not restored:\n{pane}"
        );
        let alternate = t.run(&["display-message", "-p", "-t", "e2e", "#{alternate_on}"]);
        assert_eq!(
            alternate.trim(),
            "0",
            "SIG{signal}: still on the alternate screen"
        );
    }
}

#[test]
fn soak_500_random_keys_on_a_resnet_layout() {
    let (t, _dir) = explore_fixture("resnet50_small.safetensors");
    t.wait_for("opened", 60);
    let pid = t.explorer_pid();
    let start_rss = rss_mib(pid);
    // Navigation, modes, pages, methods, colormaps, help, saving; prompts are opened and left.
    let keys = [
        "j", "j", "j", "k", "l", "h", "Tab", "BTab", "1", "2", "3", "4", "m", "p", "[", "]",
        "Enter", "Esc", "g", "G", "PageDown", "PageUp", "?", "x", "P", "s", "/", "c", "o",
        "Escape", "Down", "Up", "Right", "Left",
    ];
    // A fixed-seed linear congruential sequence: the same 500 keys every run.
    let mut state: u64 = 0x5eed;
    let mut peak = start_rss;
    for i in 0..500 {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let key = keys[(state >> 33) as usize % keys.len()];
        t.run(&["send-keys", "-t", "e2e", key]);
        std::thread::sleep(Duration::from_millis(25));
        if i % 50 == 49 {
            let pane = t.pane();
            assert!(
                !pane.contains("EXIT="),
                "the explorer ended after {i} keys:\n{pane}"
            );
            peak = peak.max(rss_mib(pid));
        }
    }
    t.keys(&["Escape", "Escape", "q"]);
    let pane = t.wait_for("EXIT=", 30);
    assert!(pane.contains("EXIT=0"), "{pane}");
    println!("soak: RSS {start_rss:.0} MiB after opening, peak {peak:.0} MiB over 500 keys");
    // The view cache holds at most 256 MiB of pictures; CAM sessions and the running job add
    // a little on this small model.
    assert!(
        peak - start_rss < 400.0,
        "memory grew from {start_rss:.0} to {peak:.0} MiB"
    );
}

#[test]
fn explore_a_keras_model_from_onnx_in_tmux() {
    // A Keras VGG16-shaped model converted by tf2onnx (scripts/make_keras_fixtures.py): NHWC
    // input, layers by their Keras names; activations, a CAM and filter patterns in the explorer.
    let (t, _dir) = explore_fixture("keras_vgg16.onnx");
    let pane = t.wait_for("opened", 60);
    assert!(
        pane.contains("block1_conv1") && !pane.contains("block1_conv1_1"),
        "{pane}"
    );
    t.keys(&["/", "block3_conv3", "Enter"]);
    t.wait_for("block3_conv3.relu: channels 0..16 of 16", 30);
    t.keys(&["Tab"]);
    t.wait_for("Grad-CAM for '", 30);
    t.keys(&["Tab"]);
    t.wait_for("filter patterns of channels 0..16", 120);
    t.keys(&["q"]);
    let pane = t.wait_for("EXIT=", 20);
    assert!(pane.contains("EXIT=0"), "{pane}");
}
