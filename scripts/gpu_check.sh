#!/usr/bin/env bash
# The GPU check: on a machine with an NVIDIA GPU, runs the CUDA-vs-CPU parity tests on cuda:0
# and the benchmarks on cuda:0, then, where python3 has PyTorch with CUDA, the PyTorch side of
# each benchmark on the same GPU, and prints the figures. Needs nothing from the network and no
# Rust toolchain: only the bundle that scripts/build_cuda.sh packs, and this repository's tests/
# fixtures. Each step has its own time limit: convscope's steps 7 minutes at most together,
# PyTorch's 4 (they take seconds each on an H100-class GPU). The pytorch-grad-cam benchmark runs
# where python3 can import pytorch_grad_cam (it is pure Python: a copy on PYTHONPATH will do).
#
#     scripts/gpu_check.sh [BUNDLE]      # default target/cuda/gpu-bundle.tar.xz
#
# CUDA's libraries (cuBLAS, NVRTC, cuRAND) are taken from CUDA_LIBS if set, else from the first
# Python environment on the machine whose nvidia/ packages have them (PyTorch's wheels bring
# them), else from the system's library path.
set -uo pipefail

cd "$(dirname "$0")/.."
bundle=${1:-target/cuda/gpu-bundle.tar.xz}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
tar -xJf "$bundle" -C "$work" || { echo "error: cannot unpack $bundle"; exit 1; }

find_libs() {
    [[ -n "${CUDA_LIBS:-}" ]] && { echo "$CUDA_LIBS"; return; }
    local py
    for py in python3 python; do
        command -v "$py" >/dev/null || continue
        "$py" - <<'EOF' && return
import glob, os, site, sys
roots = site.getsitepackages() + [site.getusersitepackages()]
for root in roots:
    for lib in glob.glob(os.path.join(root, "nvidia", "**", "libcublas.so.*"), recursive=True):
        dirs = {os.path.dirname(p) for p in glob.glob(os.path.join(root, "nvidia", "**", "lib*.so.*"), recursive=True)}
        print(":".join(sorted(dirs)))
        sys.exit(0)
sys.exit(1)
EOF
    done
}
libs=$(find_libs)
export LD_LIBRARY_PATH=${libs:+$libs:}${LD_LIBRARY_PATH:-}
echo "== machine"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || echo "nvidia-smi failed"
echo "CUDA libraries from: ${libs:-the system library path}"

status=0
step() {
    local limit=$1; shift
    echo "== $*"
    timeout "$limit" "$@" || { echo "FAILED ($?): $*"; status=1; }
}

export BENCH_DEVICE=cuda:0
step 120 "$work/cuda_parity" --test-threads 1 --nocapture
step 30 "$work/convscope" --device cuda:0 predict
step 60 "$work/bench_forward" 20
step 60 "$work/bench_cam" 20
step 150 "$work/bench_filters" 64

if python3 -c 'import sys, torch; sys.exit(not torch.cuda.is_available())' 2>/dev/null; then
    step 60 python3 scripts/bench_forward_torch.py 20
    if python3 -c 'import pytorch_grad_cam' 2>/dev/null; then
        step 60 python3 scripts/bench_cam_torch.py 20
    else
        echo "== pytorch_grad_cam cannot be imported: its Grad-CAM is not timed"
    fi
    step 120 python3 scripts/bench_filters_torch.py 64
else
    echo "== python3 has no PyTorch with CUDA: PyTorch's side is not timed"
fi
exit $status
