#!/usr/bin/env bash
# `make demo`: the main job on an embedded default.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
echo "== validate the example policy tree (org defaults -> team defaults -> policy)"
$BIN/inference-autoscaler validate policies/
echo
echo "== replay: the chat policy (p95 time to first token <= 2 s, nothing else stated) over a recorded"
echo "   load step (examples/observations/chat-load-step.jsonl): every decision with its explanation"
$BIN/inference-autoscaler replay --policy policies/team-a/chat.yaml --root policies \
  --observations examples/observations/chat-load-step.jsonl --output table | awk 'NR <= 2 || NR % 8 == 0'
echo
echo "== simulate: 30 min of the Azure 2023 code trace (x12): the SLO policy against the HPA on GPU"
echo "   utilization, KEDA's queue scaler, Knative's KPA and Ray Serve (simulations/azure-code-30min.yaml)"
OUT=${DEMO_OUT:-demo-out}
$BIN/inference-autoscaler simulate --scenario simulations/azure-code-30min.yaml --out "$OUT/simulation"
echo
echo "== two workdays with a sharp morning ramp and 3-5 min model loads: ratio targets with and without"
echo "   the predictive warm pool, the SLO policy, the KPA and Ray Serve (simulations/predictive-workday.yaml)"
$BIN/inference-autoscaler simulate --scenario simulations/predictive-workday.yaml --duration 172800 \
  --out "$OUT/predictive"
