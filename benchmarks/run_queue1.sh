#!/usr/bin/env bash
# Session-2 queue: structured and sharing/low-rank on SST-2 and MRPC, reduced fine-tune budgets (CPU).
set -uo pipefail
cd "$(dirname "$0")"
PY=../.venv/bin/python
$PY structured.py --tasks sst2 --finetune_steps 100 > cache/logs/structured_sst2.log 2>&1
$PY structured.py --tasks mrpc --finetune_steps 60 > cache/logs/structured_mrpc.log 2>&1
$PY sharing_lowrank.py --tasks sst2 --finetune_steps 150 > cache/logs/sharing_sst2.log 2>&1
$PY sharing_lowrank.py --tasks mrpc --finetune_steps 80 > cache/logs/sharing_mrpc.log 2>&1
