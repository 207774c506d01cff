"""Import what a dispatch table names, only when it is used.

A dispatch table maps a name (a subcommand, a model ``kind``) to ``"module:attr"``;
resolving the entry imports that module and no other. Besides keeping start-up light,
this is how a job's code dependencies stay narrow: codedeps.py counts only the entries a
job selects as its code.
"""

from __future__ import annotations

import importlib
from typing import Any


def resolve(reference: str) -> Any:
    """The attribute a ``"package.module:attr"`` reference names."""
    module, attr = reference.split(":")
    return getattr(importlib.import_module(module), attr)
