"""Measures the explorer in tmux: time from launch to the first frame, and per-key latency when
moving between layers with activations shown (cache warm: every layer visited once before).

    cargo build --release
    python scripts/measure_explorer.py [MODEL] [IMAGE]

Latency is key press (tmux send-keys) to the pane showing the new layer's caption, polled every
2 ms, so it includes tmux's own delay; medians over the moves.
"""

import statistics
import subprocess
import sys
import time

BIN = "target/release/convscope"
SOCK = "convscope-measure"


def tmux(*args):
    return subprocess.run(["tmux", "-L", SOCK, *args], capture_output=True, text=True).stdout


def pane():
    return tmux("capture-pane", "-p", "-t", "m")


def wait(pred, timeout=60.0):
    start = time.perf_counter()
    while time.perf_counter() - start < timeout:
        p = pane()
        if pred(p):
            return time.perf_counter()
        time.sleep(0.002)
    raise SystemExit(f"timed out; pane:\n{pane()}")


def caption(p):
    lines = [l for l in p.splitlines() if "channels" in l or "top units" in l]
    return lines[0] if lines else ""


def main():
    model = sys.argv[1] if len(sys.argv) > 1 else "models/shapes"
    image = sys.argv[2] if len(sys.argv) > 2 else "models/shapes/two_shapes.png"
    tmux("kill-server")
    t0 = time.perf_counter()
    tmux("new-session", "-d", "-s", "m", "-x", "160", "-y", "48", f"{BIN} {model} {image} --protocol halfblocks")
    first = wait(lambda p: "1 Activations" in p) - t0
    wait(lambda p: "opened" in p)
    wait(lambda p: caption(p) != "")
    rows = 8
    for key in ["j"] * rows + ["k"] * rows:  # warm the cache
        before = caption(pane())
        tmux("send-keys", "-t", "m", key)
        wait(lambda p: caption(p) != before and caption(p) != "")
    times = []
    for key in ["j"] * rows + ["k"] * rows:
        before = caption(pane())
        t = time.perf_counter()
        tmux("send-keys", "-t", "m", key)
        times.append(wait(lambda p: caption(p) != before and caption(p) != "") - t)
    tmux("send-keys", "-t", "m", "q")
    tmux("kill-server")
    print(f"{model}: first frame {first * 1e3:.0f} ms after launch; key to new layer shown: "
          f"median {statistics.median(times) * 1e3:.1f} ms, max {max(times) * 1e3:.1f} ms over {len(times)} moves")


if __name__ == "__main__":
    main()
