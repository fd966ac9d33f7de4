#!/usr/bin/env bash
# The Theseus benchmark as committed: SST-2 with a 2-point learning-rate grid and the init study,
# then the other tasks with the four main variants at one learning rate (CPU budget).
set -euo pipefail
cd "$(dirname "$0")"
PY=../.venv/bin/python
if [ "${1:-all}" = "all" ]; then
  $PY theseus.py --tasks sst2 --lrs 5e-5 1e-4
  shift || true
  set -- mrpc rte tnews
fi
$PY theseus.py --tasks "$@" --lrs 1e-4 --variants "first-3-layers (baseline)" "theseus constant" \
    "theseus linear" "theseus constant + KD"
