#!/usr/bin/env bash
# Create (or reuse) the project's virtualenv and print its path on stdout.
#
# The venv lives outside the clone, keyed by a hash of what is installed in it (the
# requirement files and scripts/venv/), so a rerun on the same machine is instant while
# any change to the pins, or a fresh machine, installs from scratch. Override the
# location with TWOSTAGE_VENV_ROOT. Progress goes to stderr so callers can capture the path.
#
# Every clone on the machine shares the venv, so it holds the dependencies only and no
# install of twostage: a hook in its site-packages (scripts/venv/_twostage_clone.py) puts
# the src/ of the clone that holds the current folder first, and its `twostage` command
# runs that clone's command line. Nothing a clone does changes the code another one runs.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
root="${TWOSTAGE_VENV_ROOT:-${XDG_CACHE_HOME:-$HOME/.cache}/twostage}"
key="$(cat "$repo/requirements.txt" "$repo/requirements-dev.txt" "$repo"/scripts/venv/* | sha256sum | cut -c1-12)"
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
  site="$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
  cp "$repo/scripts/venv/_twostage_clone.py" "$site/"
  echo "import _twostage_clone" >"$site/_twostage_clone.pth"
  { echo "#!$venv/bin/python"; cat "$repo/scripts/venv/twostage"; } >"$venv/bin/twostage"
  chmod +x "$venv/bin/twostage"
  touch "$venv/.complete"
fi
echo "$venv"
