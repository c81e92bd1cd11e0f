//! End to end: the real binary in tmux on the demo model, driven by keys, read from the pane.
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
    let cmd = format!(
        "{} {} {} --protocol halfblocks --config {}; echo EXIT=$?; sleep 60",
        env!("CARGO_BIN_EXE_convscope"),
        root.join("models/shapes").display(),
        root.join("models/shapes/two_shapes.png").display(),
        cfg.display()
    );
    let t = Tmux {
        socket: format!("convscope-e2e-{}", std::process::id()),
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
