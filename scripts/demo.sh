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
