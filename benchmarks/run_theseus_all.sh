#!/usr/bin/env bash
# The Theseus benchmark as committed: SST-2 with a 2-point learning-rate grid and the init study,
# then MRPC, RTE and TNEWS with the four main variants at one learning rate (CPU budget).
set -euo pipefail
cd "$(dirname "$0")"
PY=../.venv/bin/python
$PY theseus.py --tasks sst2 --lrs 5e-5 1e-4
$PY theseus.py --tasks mrpc rte tnews --lrs 1e-4 --variants "first-3-layers (baseline)" "theseus constant" \
    "theseus linear" "theseus constant + KD"
