#!/usr/bin/env bash
# Builds convscope with CUDA on a machine that has no GPU and no CUDA installed: the toolkit
# comes from NVIDIA's packages on PyPI, then the release binary, the benchmark examples and the
# test binaries are built, and what scripts/gpu_check.sh runs is packed into one bundle.
#
#     scripts/build_cuda.sh [--cudnn] [--check]
#
# --check only type-checks every target (library, binaries, examples, tests) with the feature on,
# which takes minutes instead of the full build's most of an hour: the way to see that the CUDA
# code paths still compile after a change, on a machine without a GPU.
#
# Settings (environment):
#   CUDA_VERSION      toolkit release, default 13.0. The GPU's driver must support it: a driver
#                     for CUDA 13.0 (nvidia-smi's "CUDA Version") will not load PTX from a newer
#                     toolkit.
#   CUDA_COMPUTE_CAP  GPU architecture to compile for, default 90 (H100/H200); 80 for A100,
#                     89 for L4/L40, 86 for RTX 30xx.
#   TOOLKIT           where the toolkit goes, default target/cuda-toolkit.
#   CARGO_TARGET_DIR  default target/cuda, so the CPU build in target/ is left alone.
set -euo pipefail

cd "$(dirname "$0")/.."
features=cuda
check_only=false
for arg in "$@"; do
    case $arg in
        --cudnn) features=cudnn ;;
        --check) check_only=true ;;
        *) echo "error: unknown option $arg (expected --cudnn or --check)" >&2; exit 2 ;;
    esac
done
version=${CUDA_VERSION:-13.0}
major=${version%%.*}
export CUDA_COMPUTE_CAP=${CUDA_COMPUTE_CAP:-90}
toolkit=${TOOLKIT:-$PWD/target/cuda-toolkit}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target/cuda}

# curand's and cuDNN's version numbers are their own; these are the ones released with CUDA 13.0.
declare -A companion=([13.0]="nvidia-curand==10.4.0.* nvidia-cudnn-cu13==9.*")
[[ -n "${companion[$version]:-}" ]] || {
    echo "error: no known curand/cuDNN versions for CUDA $version; add them to ${BASH_SOURCE[0]}" >&2
    exit 1
}
read -r curand cudnn <<<"${companion[$version]}"
packages=(nvidia-cuda-nvcc nvidia-nvvm nvidia-cuda-crt nvidia-cuda-runtime nvidia-cuda-cccl
          nvidia-cublas nvidia-cuda-nvrtc)
specs=("${packages[@]/%/==$version.*}" "$curand")
[[ $features == cudnn ]] && specs+=("$cudnn")

start=$(date +%s)
if [[ ! -x "$toolkit/nvidia/cu$major/bin/nvcc" ]]; then
    echo "installing the CUDA $version toolkit from PyPI into $toolkit"
    python3 -m pip install --quiet --no-deps --target "$toolkit" "${specs[@]}"
fi
if [[ $features == cudnn && ! -d $toolkit/nvidia/cudnn ]]; then
    # A toolkit installed earlier without cuDNN: pip --target leaves an existing nvidia/ alone,
    # so cuDNN goes in beside it and is moved in.
    echo "installing cuDNN into $toolkit"
    python3 -m pip install --quiet --no-deps --target "$toolkit/cudnn-wheel" "$cudnn"
    mv "$toolkit/cudnn-wheel/nvidia/cudnn" "$toolkit/nvidia/"
    rm -rf "$toolkit/cudnn-wheel"
fi
cuda=$toolkit/nvidia/cu$major
[[ -d $toolkit/nvidia/cudnn ]] && cp -rn "$toolkit"/nvidia/cudnn/{include,lib} "$cuda"/ 2>/dev/null || true

# The wheels ship versioned libraries only; the linker wants the plain names.
for lib in "$cuda"/lib/lib*.so.*; do
    plain=${lib%%.so.*}.so
    [[ -e $plain ]] || ln -s "$(basename "$lib")" "$plain"
done

# libcuda.so belongs to the driver, which a build machine lacks: link against a stub with the
# driver's soname, made from the functions cudarc declares. At run time the real one is loaded.
mkdir -p "$cuda/lib/stubs"
if [[ ! -e $cuda/lib/stubs/libcuda.so ]]; then
    cudarc=$(find "${CARGO_HOME:-$HOME/.cargo}/registry/src" -maxdepth 1 -path '*/index.crates.io*' \
        -exec sh -c 'ls -d "$1"/cudarc-* 2>/dev/null' _ {} \; | sort -V | tail -1)
    if [[ -z $cudarc ]]; then
        cargo fetch --quiet
        cudarc=$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/cudarc-* | sort -V | tail -1)
    fi
    grep -ohE '^\s+fn cu[A-Za-z0-9_]+\(' "$cudarc/src/driver/sys/mod.rs" |
        sed -E 's/^\s+fn (cu[A-Za-z0-9_]+)\(/void \1(void) {}/' | sort -u >"$cuda/lib/stubs/cuda_stub.c"
    gcc -shared -fPIC -Wl,-soname,libcuda.so.1 -o "$cuda/lib/stubs/libcuda.so" "$cuda/lib/stubs/cuda_stub.c"
fi

export CUDA_HOME=$cuda CUDA_PATH=$cuda CUDA_ROOT=$cuda PATH=$cuda/bin:$PATH
export LIBRARY_PATH=$cuda/lib:$cuda/lib/stubs${LIBRARY_PATH:+:$LIBRARY_PATH}
echo "nvcc: $(nvcc --version | tail -1); compute capability $CUDA_COMPUTE_CAP; features: $features"

if $check_only; then
    cargo check --features "$features" --all-targets
    echo "checked in $(( $(date +%s) - start )) s"
    exit 0
fi

cargo build --release --features "$features" --bins --examples
# Test binaries, built in release mode, listed one path per line for scripts/gpu_check.sh.
cargo test --release --features "$features" --no-run --message-format=json 2>/dev/null |
    python3 -c '
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("profile", {}).get("test") and m.get("executable"):
        print(m["executable"])' >"$CARGO_TARGET_DIR/release/test-binaries.txt"

# What scripts/gpu_check.sh needs on the GPU machine, packed small enough to carry there.
release=$CARGO_TARGET_DIR/release
stage=$(mktemp -d)
cp "$release/convscope" "$release"/examples/bench_{forward,cam,filters} "$stage"/
cp "$(grep '/cuda_parity-' "$release/test-binaries.txt")" "$stage/cuda_parity"
tar -cJf "$CARGO_TARGET_DIR/gpu-bundle.tar.xz" -C "$stage" .
rm -rf "$stage"

echo "built in $(( $(date +%s) - start )) s:"
echo "  $release/convscope"
echo "  $(wc -l <"$release/test-binaries.txt") test binaries, listed in $release/test-binaries.txt"
echo "  $CARGO_TARGET_DIR/gpu-bundle.tar.xz ($(du -h "$CARGO_TARGET_DIR/gpu-bundle.tar.xz" | cut -f1)) for scripts/gpu_check.sh"
