#!/usr/bin/env bash
# Idempotent set-up used by the README's two commands and by CI.
#   - Debian's libosmesa6 (CPU) or libegl1 + libopengl0 (NVIDIA GPU) for headless MuJoCo rendering, when
#     missing and we may install system packages;
#   - a virtual environment in .venv (override with VENV=...);
#   - PyTorch: the CUDA build when an NVIDIA GPU is visible, otherwise the CPU build
#     (so a laptop or CI machine never pulls several GB of CUDA libraries);
#   - this package, editable, with the dev and cluster extras (openai, for embodied_rl.llm, is a main dependency).
# Re-running is cheap: the pip step only runs again when pyproject.toml changes.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3}
TORCH_VERSION=${TORCH_VERSION:-2.13.0}
CPU_TORCH_INDEX=${CPU_TORCH_INDEX:-https://download.pytorch.org/whl/cpu}

has_gpu() { command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; }

# Headless rendering as embodied_rl.envs.rendering chooses it: OSMesa on CPU, EGL with an NVIDIA GPU (glvnd's
# loaders; the driver brings the rest). ldconfig's list is read whole: `ldconfig -p | grep -q` can fail under
# pipefail with 141 (SIGPIPE once grep exits early) and make an installed library look missing.
missing_libraries() {  # those of the named shared libraries that ldconfig does not know
    local known
    known=$(ldconfig -p 2>/dev/null || true)
    for library in "$@"; do grep -q "$library" <<<"$known" || echo "$library"; done
}
if has_gpu; then gl_packages="libegl1 libopengl0" gl_libraries="libEGL.so.1 libOpenGL.so.0"
else gl_packages=libosmesa6 gl_libraries=libOSMesa; fi
missing=$(missing_libraries $gl_libraries)
if [ -n "$missing" ]; then
    install="apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $gl_packages >/dev/null"
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "[setup] installing $gl_packages (headless rendering)"
        bash -c "$install" || echo "[setup] warning: could not install $gl_packages; pixel observations will not render"
    elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
        echo "[setup] installing $gl_packages (headless rendering)"
        sudo bash -c "$install" || echo "[setup] warning: could not install $gl_packages; pixel observations will not render"
    else
        echo "[setup] warning:" $missing "not found and no root; install Debian's $gl_packages for headless rendering"
    fi
fi

if [ ! -x "$VENV/bin/python" ]; then
    echo "[setup] creating $VENV"
    "$PYTHON" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check -q)

stamp="$VENV/.embodied_rl-$(sha1sum pyproject.toml | cut -c1-12)"
if [ ! -f "$stamp" ]; then
    "${PIP[@]}" install --upgrade pip
    if ! "$VENV/bin/python" -c "import torch" 2>/dev/null; then
        if has_gpu; then
            echo "[setup] NVIDIA GPU found: installing the CUDA build of torch==$TORCH_VERSION"
            "${PIP[@]}" install "torch==$TORCH_VERSION"
        elif "${PIP[@]}" install --no-index --no-deps "torch==$TORCH_VERSION" 2>/dev/null; then
            echo "[setup] no GPU: installed torch==$TORCH_VERSION from a local wheel (its dependencies come next)"
        else
            echo "[setup] no GPU: installing the CPU build of torch==$TORCH_VERSION"
            "${PIP[@]}" install --retries 2 "torch==$TORCH_VERSION" --extra-index-url "$CPU_TORCH_INDEX"
        fi
    fi
    echo "[setup] installing embodied_rl with extras dev, cluster"
    "${PIP[@]}" install -e ".[dev,cluster]"
    touch "$stamp"
fi

# An existing venv made on a CPU machine keeps its CPU torch (the stamp skips the pip step and
# "import torch" succeeds), so switch it to the CUDA build once a GPU is visible. pip treats
# 2.13.0+cpu as satisfying ==2.13.0, hence the uninstall first.
cpu_torch() { "$VENV/bin/python" -c "import sys, torch; sys.exit(0 if torch.version.cuda is None else 1)" 2>/dev/null; }
tried="$VENV/.embodied_rl-cuda-torch-unavailable"  # tried once: the registry gave a CPU build again
if has_gpu && [ ! -f "$tried" ] && cpu_torch; then
    echo "[setup] NVIDIA GPU found but $VENV has the CPU build of torch: replacing it with the CUDA build of torch==$TORCH_VERSION"
    "${PIP[@]}" uninstall -y torch
    "${PIP[@]}" install "torch==$TORCH_VERSION"
    if cpu_torch; then
        echo "[setup] warning: the package index offered only a CPU build of torch==$TORCH_VERSION; training runs on CPU"
        touch "$tried"
    fi
fi
