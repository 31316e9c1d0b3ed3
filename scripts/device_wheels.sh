#!/usr/bin/env bash
# Wheels for a GPU machine without internet (the `device` machines: Python 3.12 with CUDA torch, numpy, scipy,
# tensorboard, imageio, h5py, matplotlib, pytest... but none of MuJoCo, Meta-World, Gymnasium, Hydra, Minari).
# Run once on a machine with package-registry access: it fills .whl/ (git-ignored, ~46 MB, under the device
# tool's 64 MiB carry limit) with this venv's versions of the missing packages, as CPython 3.12 manylinux wheels
# or pure-Python wheels built here, and .gl/ with the GL loader packages MuJoCo's EGL rendering needs there.
# scripts/gpu_check.sh installs both when it finds .whl/ and no .venv/ (carry `.whl` and `.gl`).
# Left out for size: POT (not imported yet) and imageio-ffmpeg (68 MB): videos there are written with the
# image's OpenCV instead (MPEG-4 part 2 rather than H.264; embodied_rl/logging/video.py).
#   bash scripts/device_wheels.sh && du -sh .whl .gl      # PYVER=3.11 for another Python
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
version() { $PY -c "import importlib.metadata as m, sys; print(m.version(sys.argv[1]))" "$1"; }
pinned() { for name in "$@"; do echo "$name==$(version "$name")"; done; }
rm -rf .whl
mkdir -p .whl
# compiled packages: cp312 manylinux wheels from the registry
$PY -m pip download -q --no-deps --only-binary=:all: --python-version "${PYVER:-3.12}" --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    --platform manylinux1_x86_64 -d .whl $(pinned mujoco glfw)
# pure-Python packages (antlr4-python3-runtime ships only sources): wheels built or fetched here
$PY -m pip wheel -q --no-deps -w .whl $(pinned gymnasium farama-notifications pyopengl metaworld minari hydra-core \
    omegaconf antlr4-python3-runtime hydra-joblib-launcher hydra-submitit-launcher submitit)
# GL loaders for EGL (the device README's recipe), if apt can fetch them here
rm -rf .gl
mkdir -p .gl /tmp/amd64/partial
apt_opts=(-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 -oDir::State::Lists=/tmp/amd64)
if apt-get "${apt_opts[@]}" update -qq >/dev/null 2>&1; then
    (cd .gl && apt-get "${apt_opts[@]}" download -qq libvulkan1 libegl1 libglvnd0 libopengl0 libgl1 libglx0 libgles2) ||
        echo "warning: could not download the GL loader packages into .gl/"
else
    echo "warning: apt-get update failed; no GL loader packages in .gl/"
fi
ls .whl .gl
du -sh .whl .gl
