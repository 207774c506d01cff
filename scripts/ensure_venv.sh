#!/usr/bin/env bash
# Create (or reuse) the project's virtualenv and print its path on stdout.
#
# The venv lives outside the clone, keyed by a hash of the requirement files,
# so a rerun on the same machine is instant while any change to the pins, or a
# fresh machine, installs from scratch. Override the location with
# TWOSTAGE_VENV_ROOT. Progress goes to stderr so callers can capture the path.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
root="${TWOSTAGE_VENV_ROOT:-${XDG_CACHE_HOME:-$HOME/.cache}/twostage}"
key="$(cat "$repo/requirements.txt" "$repo/requirements-dev.txt" "$repo/pyproject.toml" | sha256sum | cut -c1-12)"
venv="$root/venv-$key"
if [ ! -f "$venv/.complete" ]; then
  echo "[twostage] creating virtualenv $venv (first run: ~5 minutes)" >&2
  rm -rf "$venv"
  mkdir -p "$root"
  python3 -m venv "$venv"
  # This machine's pip config points at local wheel folders that may be absent;
  # drop pip's warnings about them so real errors stay visible.
  quiet_pip() { "$venv/bin/pip" "$@" 2>&1 | { grep -v "is neither a file nor a directory" >&2 || true; }; }
  quiet_pip install --quiet --upgrade pip
  quiet_pip install --quiet -r "$repo/requirements.txt" -r "$repo/requirements-dev.txt"
  touch "$venv/.complete"
fi
# The package itself is installed editable on every call: cheap, and keeps the
# venv valid for whichever clone is calling.
"$venv/bin/pip" install --quiet --no-deps --no-build-isolation -e "$repo" >&2
echo "$venv"
