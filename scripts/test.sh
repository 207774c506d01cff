#!/usr/bin/env bash
# Install what is needed (first run only), run the linters, then the whole test
# suite (unit tests and end-to-end Snakemake/DVC runs on the smoke profile).
# Extra arguments go to pytest, e.g. `bash scripts/test.sh -m "not slow"`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
venv="$(bash scripts/ensure_venv.sh)"
export PATH="$venv/bin:$PATH" DVC_NO_ANALYTICS=1
echo "== lint" >&2
ruff check .
ruff format --check .
snakefmt --check Snakefile workflow/rules
snakemake --lint --cores 1
echo "== tests" >&2
python -m pytest "$@"
