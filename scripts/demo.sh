#!/usr/bin/env bash
# `make demo`: the main job on an embedded default.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
echo "== validate the example policy tree (org defaults -> team defaults -> policy)"
$BIN/inference-autoscaler validate policies/
echo
echo "== replay: the chat policy over a recorded load step (examples/observations/chat-load-step.jsonl)"
$BIN/inference-autoscaler replay --policy policies/team-a/chat.yaml --root policies \
  --observations examples/observations/chat-load-step.jsonl --output table
echo
echo "== simulate: 30 min of the Azure 2023 code trace (x12) through the chat policy, the HPA on GPU"
echo "   utilization and Knative's KPA, with the oracle as the lower bound (simulations/azure-code-30min.yaml)"
OUT=${DEMO_OUT:-demo-out/simulation}
$BIN/inference-autoscaler simulate --scenario simulations/azure-code-30min.yaml --out "$OUT"
echo
echo "== predictive warm pool: two workdays with a sharp morning ramp and 3-5 min model loads; the same"
echo "   policy with and without spec.predictive (simulations/predictive-workday.yaml)"
$BIN/inference-autoscaler simulate --scenario simulations/predictive-workday.yaml --duration 172800 \
  --out "${DEMO_OUT:-demo-out}/predictive"
