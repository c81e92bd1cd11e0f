"""Measures the explorer in tmux: time from launch to the first frame, and per-key latency with
`j` held (keys sent at a fixed rate, 30 per second by default) in the Activations or CAM view.

    cargo build --release
    cargo run --release --example random_checkpoint -- vgg16 /tmp/vgg16.safetensors
    python scripts/measure_explorer.py [MODEL] [IMAGE] [--view activations|cam] [--rate 30]
        [--protocol halfblocks|sixel] [--bin target/release/convscope] [--runs 3]

A key's latency is the time from its `tmux send-keys` to the first capture of the pane that shows
the highlight on its row or beyond (the pane is tall enough for the whole tree, which is polled
as fast as tmux answers, a few ms, so it includes tmux's own delay). The top-level modules are
opened first (VGG's features, ResNet's stages); each run holds `j` from the first row down to the
last, then `k` back up after a pause; medians and maxima are over all keys of all runs.
"""

import argparse
import statistics
import subprocess
import time

SOCK = "convscope-measure"
CONF = "/tmp/convscope-measure.tmux.conf"
HEIGHT = 150


def tmux(*args):
    # Passthrough on, as for anyone who wants pictures inside tmux.
    return subprocess.run(["tmux", "-L", SOCK, "-f", CONF, *args], capture_output=True,
                          text=True).stdout


def pane():
    return tmux("capture-pane", "-p", "-t", "m")


def tree_rows(p):
    """The tree's rows as shown (they start below its border), highlight symbol included."""
    lines = p.splitlines()
    tree = []
    for l in lines[4:]:
        if not l.startswith("│"):
            break
        left = l[1:l.index("│", 1)] if "│" in l[1:] else l[1:]
        if left.strip() == "":
            break
        tree.append(left)
    return tree


def highlighted(p):
    """Index of the highlighted tree row and the count of rows shown."""
    tree = tree_rows(p)
    index = next((i for i, r in enumerate(tree) if r.startswith(">")), None)
    return index, len(tree)


def wait(pred, timeout=120.0):
    start = time.perf_counter()
    while time.perf_counter() - start < timeout:
        p = pane()
        if pred(p):
            return time.perf_counter(), p
        time.sleep(0.002)
    raise SystemExit(f"timed out; pane:\n{pane()}")


def unfold_top_level():
    """Opens every top-level module (VGG's features, ResNet's layer1-4) and goes back to the first
    row, so that holding j walks through the network's layers."""
    tmux("send-keys", "-t", "m", "g")
    time.sleep(0.3)
    last = None
    while True:
        p = pane()
        index, rows = highlighted(p)
        tree = tree_rows(p)
        if tree[index][2:4] == "▸ ":
            tmux("send-keys", "-t", "m", "l")
            time.sleep(0.3)
            continue
        if index == rows - 1 or index == last:
            break
        last = index
        tmux("send-keys", "-t", "m", "j")
        time.sleep(0.1)
    tmux("send-keys", "-t", "m", "g")
    time.sleep(0.5)


def hold(key, count, rate, start_index):
    """Sends `key` `count` times at `rate` per second while polling; returns each key's latency."""
    step = 1 if key == "j" else -1
    sent = []
    shown = [None] * count
    t0 = time.perf_counter()
    while any(s is None for s in shown):
        now = time.perf_counter()
        if len(sent) < count and now >= t0 + len(sent) / rate:
            tmux("send-keys", "-t", "m", key)
            sent.append(time.perf_counter())
        index, _ = highlighted(pane())
        seen = time.perf_counter()
        if index is not None:
            moved = (index - start_index) * step
            for i in range(min(moved, len(sent))):
                if shown[i] is None:
                    shown[i] = seen
        if now - t0 > 60:
            raise SystemExit("keys were not shown within 60 s")
    return [s - t for s, t in zip(shown, sent)]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model", nargs="?", default="models/shapes")
    ap.add_argument("image", nargs="?", default="models/shapes/two_shapes.png")
    ap.add_argument("--view", choices=["activations", "cam"], default="activations")
    ap.add_argument("--rate", type=float, default=30.0)
    ap.add_argument("--protocol", default="halfblocks")
    ap.add_argument("--bin", default="target/release/convscope")
    ap.add_argument("--runs", type=int, default=3)
    a = ap.parse_args()
    with open(CONF, "w") as f:
        f.write("set -g allow-passthrough on\n")
    tmux("kill-server")
    t0 = time.perf_counter()
    tmux("new-session", "-d", "-s", "m", "-x", "160", "-y", str(HEIGHT),
         f"{a.bin} {a.model} {a.image} --protocol {a.protocol}")
    first = wait(lambda p: "1 Activations" in p)[0] - t0
    wait(lambda p: "opened" in p)
    unfold_top_level()
    if a.view == "cam":
        tmux("send-keys", "-t", "m", "2")
    time.sleep(1.0)
    start, rows = highlighted(pane())
    count = rows - 1 - start
    times = []
    for _ in range(a.runs):
        times += hold("j", count, a.rate, start)
        time.sleep(1.0)
        times += hold("k", count, a.rate, start + count)
        time.sleep(1.0)
    tmux("send-keys", "-t", "m", "q")
    tmux("kill-server")
    print(f"{a.model} {a.view} {a.protocol} ({a.bin}): first frame {first * 1e3:.0f} ms; "
          f"{a.rate:.0f} keys/s held: median {statistics.median(times) * 1e3:.1f} ms, "
          f"max {max(times) * 1e3:.1f} ms over {len(times)} keys")


if __name__ == "__main__":
    main()
