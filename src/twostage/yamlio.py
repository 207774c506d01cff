"""YAML reading for everything the project parses: params, profiles, dvc.lock, versions.

Every job start and every Snakemake parse reads the params files, so the parser's speed is
paid hundreds of times per build: libyaml's C parser (when PyYAML was built with it) is
several times faster than the pure-Python one, and builds the same objects (the same
safe constructor and resolver). A document it rejects is parsed again by the pure-Python
loader, so an error names its problem and position exactly as before.
"""

from __future__ import annotations

from typing import Any

import yaml

_FAST_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def safe_load(text: str) -> Any:
    """``yaml.safe_load(text)``, through libyaml when available."""
    try:
        return yaml.load(text, Loader=_FAST_LOADER)
    except yaml.YAMLError:
        return yaml.safe_load(text)
