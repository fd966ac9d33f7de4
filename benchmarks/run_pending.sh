#!/usr/bin/env bash
# The commands behind the structured, sharing/low-rank, movement and int8 tables as committed (reduced
# fine-tune budgets: 2-core CPU). One job at a time: latency is timed at the end of each run.
set -uo pipefail
cd "$(dirname "$0")"
PY=../.venv/bin/python
mkdir -p cache/logs
$PY structured.py --tasks sst2 --finetune_steps 100 > cache/logs/structured_sst2.log 2>&1
$PY structured.py --tasks mrpc --finetune_steps 60 > cache/logs/structured_mrpc.log 2>&1
$PY sharing_lowrank.py --tasks sst2 --finetune_steps 150 > cache/logs/sharing_sst2.log 2>&1
$PY movement.py --tasks sst2 --steps 200 > cache/logs/movement_sst2.log 2>&1
$PY structured.py --tasks sst2 --finetune_steps 300 --distill --tag _kd --variants "heads 50% + ffn 50%" \
    > cache/logs/structured_sst2_kd.log 2>&1
$PY quantization.py --tasks sst2 mrpc > cache/logs/quantization2.log 2>&1
# Not run yet (no CPU time left): the MRPC runs of sharing/low-rank and movement.
$PY sharing_lowrank.py --tasks mrpc --finetune_steps 80 > cache/logs/sharing_mrpc.log 2>&1
$PY movement.py --tasks mrpc --steps 200 > cache/logs/movement_mrpc.log 2>&1
