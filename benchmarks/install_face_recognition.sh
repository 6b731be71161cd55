#!/usr/bin/env bash
# Installs the face_recognition peer for benchmarks/run.py into the project's .venv.
# dlib builds from its source distribution: about 11 minutes on 2 cores (cmake and a C++ compiler needed).
# With OpenBLAS (apt-get install libopenblas-dev liblapack-dev) its CPU speed is about 4x the plain build.
set -euo pipefail
cd "$(dirname "$0")/.."
PIP=.venv/bin/pip
$PIP install --no-binary dlib dlib
# face_recognition pins nothing harmful, but its models package imports pkg_resources: keep setuptools.
$PIP install face_recognition_models face_recognition "setuptools<81"
.venv/bin/python -c "import face_recognition; print('face_recognition', face_recognition.__version__)"
