"""Fill the ``default:`` values of a JSON schema into a valid instance.

The schema is the one place an optional key's default is written; the code then reads
every key it knows as ``spec[key]``. Like ``snakemake.utils.validate(set_default=True)``,
but a default sits only on the branch that applies: under ``if``/``then``/``else`` the
branch the instance takes, under ``oneOf``/``anyOf`` the first branch it is valid against.
So a default given under ``if: {kind: absorbing}`` is filled for that kind only.
"""

from __future__ import annotations

import copy
from typing import Any

import jsonschema

Path = tuple[str, ...]


class _Filler:
    def __init__(self, schema: dict[str, Any]):
        self.root = schema
        self.validator = jsonschema.Draft202012Validator(schema)
        self.filled: list[Path] = []

    def resolve(self, schema: Any) -> Any:
        while isinstance(schema, dict) and "$ref" in schema:
            ref = schema["$ref"]
            if not ref.startswith("#/"):
                raise ValueError(f"schema defaults: only local $ref are followed, got {ref!r}")
            node: Any = self.root
            for part in ref[2:].split("/"):
                node = node[part]
            schema = {**node, **{k: v for k, v in schema.items() if k != "$ref"}}
        return schema

    def valid(self, instance: Any, schema: Any) -> bool:
        return self.validator.evolve(schema=schema).is_valid(instance)

    def fill(self, schema: Any, instance: Any, path: Path) -> None:
        # Again while it fills something: a default set by one branch (an object under
        # if/then) takes the defaults of its own keys from another (its properties).
        before = None
        while before != len(self.filled):
            before = len(self.filled)
            self.fill_once(schema, instance, path)

    def fill_once(self, schema: Any, instance: Any, path: Path) -> None:
        schema = self.resolve(schema)
        if not isinstance(schema, dict):  # a boolean schema holds no defaults
            return
        if isinstance(instance, dict):
            self.fill_object(schema, instance, path)
        elif isinstance(instance, list) and "items" in schema:
            for i, item in enumerate(instance):
                self.fill(schema["items"], item, (*path, str(i)))
        for sub in schema.get("allOf", []):
            self.fill(sub, instance, path)
        for keyword in ("oneOf", "anyOf"):
            branch = next((s for s in schema.get(keyword, []) if self.valid(instance, s)), None)
            if branch is not None:
                self.fill(branch, instance, path)
        if "if" in schema:
            taken = "then" if self.valid(instance, schema["if"]) else "else"
            if taken in schema:
                self.fill(schema[taken], instance, path)

    def fill_object(self, schema: dict, instance: dict, path: Path) -> None:
        properties = schema.get("properties", {})
        for key, sub in properties.items():
            resolved = self.resolve(sub)
            if key not in instance and isinstance(resolved, dict) and "default" in resolved:
                instance[key] = copy.deepcopy(resolved["default"])
                self.filled.append((*path, key))
            if key in instance:
                self.fill(sub, instance[key], (*path, key))
        extra = schema.get("additionalProperties")
        if isinstance(extra, dict):
            for key in [k for k in instance if k not in properties]:
                self.fill(extra, instance[key], (*path, str(key)))


def fill_defaults(schema: dict[str, Any], instance: Any) -> list[Path]:
    """Set every absent key that has a ``default`` in ``schema`` (in place); return the
    paths it set, so a caller can tell a written value from a filled one."""
    filler = _Filler(schema)
    filler.fill(schema, instance, ())
    return filler.filled
