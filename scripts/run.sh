#!/usr/bin/env bash
# Install what is needed (first run only) and build the default experiments:
# data → VQ autoencoder → absorbing prior → samples → evaluation → report.
# Extra arguments go to snakemake, e.g. `bash scripts/run.sh --configfile params/profiles/smoke.yaml`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
venv="$(bash scripts/ensure_venv.sh)"
export PATH="$venv/bin:$PATH"
snakemake --cores "${CORES:-$(nproc)}" "$@"
echo
echo "Report: $(pwd)/results/report/index.html"
