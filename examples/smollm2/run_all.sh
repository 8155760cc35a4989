#!/usr/bin/env bash
# The whole SmolLM2 example, each step timed. Run from examples/smollm2 with the project's
# venv active (or REALIGN=/path/to/realign PYTHON=/path/to/python). One torch thread by default.
set -euo pipefail
cd "$(dirname "$0")"
export HF_HUB_OFFLINE=1 OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}" TOKENIZERS_PARALLELISM=false
PYTHON="${PYTHON:-python}"
REALIGN="${REALIGN:-realign}"
step() { local name=$1; shift; local t0=$SECONDS; echo "== $name: $*" >&2; "$@"; echo "== $name: $((SECONDS - t0)) s" >&2; }
BASE=$(step prepare "$REALIGN" models prepare smollm2)
step build_pairs "$PYTHON" build_pairs.py --quiet
step align_old "$REALIGN" train --config align_old.yaml --model "$BASE" -q
step merge "$REALIGN" merge --model "$BASE" --adapter runs/old-policy/adapter --out models/smollm2-old
step realign_run "$REALIGN" run config.yaml -q
