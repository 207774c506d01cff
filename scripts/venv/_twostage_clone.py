"""Run the twostage code of the clone that holds the current folder.

Installed by scripts/ensure_venv.sh into the venv's site-packages with a ``.pth`` line
that imports it when Python starts. The venv is shared by every clone on the machine
and holds the dependencies only, no install of twostage: whatever starts Python inside
a clone (the ``twostage`` command, ``python -m twostage``, Snakemake reading the
Snakefile, DVC's commands, torchrun's workers) imports that clone's ``src/``, whatever
another clone did with the venv. A PYTHONPATH set by hand still comes first.
"""

import os
import sys


def clone_src(folder: str) -> str | None:
    """``<clone>/src`` of the nearest folder at or above ``folder`` that holds one."""
    while True:
        src = os.path.join(folder, "src")
        if os.path.isfile(os.path.join(src, "twostage", "__init__.py")):
            return src
        parent = os.path.dirname(folder)
        if parent == folder:
            return None
        folder = parent


def _put_first() -> None:
    try:
        src = clone_src(os.getcwd())
    except OSError:  # the current folder was deleted
        return
    if src is None or src in sys.path:
        return
    # Before site-packages (where any package of the same name would be) and after the
    # PYTHONPATH entries, which Python puts first.
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path.insert(sys.path.index(here) if here in sys.path else len(sys.path), src)


_put_first()
