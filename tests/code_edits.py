"""Edits of a source file for the staleness tests: one that changes the code, one that does not."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path


def edit_function_body(path: Path) -> str:
    """Add a statement to the body of the first function in ``path``; the function's name."""
    text = path.read_text()
    tree = ast.parse(text)
    func = next(n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef))
    body = func.body
    has_docstring = isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant)
    first = body[1] if has_docstring and len(body) > 1 else body[0]
    lines = text.splitlines(keepends=True)
    indent = " " * first.col_offset
    lines.insert(first.lineno - 1, f"{indent}_probe = None  # a change to the code\n")
    path.write_text("".join(lines))
    return func.name


def reformat_without_changing_code(path: Path) -> None:
    """Comments, blank lines, a reworded docstring and another line length: the same code."""
    text = path.read_text()
    tree = ast.parse(text)
    doc = ast.get_docstring(tree, clean=False)
    if doc:
        text = text.replace(doc, doc + "\n\nReworded for a test.", 1)
    path.write_text("# A comment added by a test.\n\n\n" + text + "\n# Another comment.\n")
    subprocess.run(
        [sys.executable, "-m", "ruff", "format", "--line-length", "60", "--quiet", str(path)],
        check=True,
    )
