"""Which project code a job runs, found statically, and a hash of it that ignores layout.

A job's code is the import closure of ``twostage.cli`` for that job: every ``twostage``
module its subcommand can import, read from the source with ``ast`` (imports at module
level and inside functions alike, except under ``if TYPE_CHECKING:``), never by running it.

Code that is chosen by a name reaches the closure only through a *dispatch table*: a
module-level dict display whose keys are names (a stage, a model ``kind``) and whose
values hold ``"twostage.module:attr"`` strings, resolved with importlib when the name is
used (``stages.py: STAGES``, ``cli.COMMANDS``, ``kinds.py: KINDS``). A job takes only the
entries of its own *selectors* (its stage and the kinds of the models it builds or loads),
so an edit to the absorbing prior's model is code of the absorbing prior's jobs and not of the
autoregressive prior's. An entry may be a call whose keyword arguments are *roles*
(``PriorKind(model="...", trainer="...")``: roles ``PriorKind.model`` and
``PriorKind.trainer``): a role's references count only for a job whose closure holds a
module that resolves that role, declared by a module-level
``RESOLVES = ("PriorKind.model",)``; so a kind's trainer is code of its training jobs, not
of the jobs that only load its model. A ``"twostage.module:attr"`` string anywhere else
counts as an import of that module, and so does ``importlib.import_module("twostage.x")``
with a literal name; a computed name is followed only through a dispatch table (the tests
refuse any other).

A module's hash is that of its syntax tree without docstrings and without the dispatch
entries the job does not select: comments, blank lines, line breaks, formatting and
docstrings change nothing, nor does adding a stage or a kind that the job does not use.
Package data a module names (``params_schema.yaml``) is hashed with it, as parsed data.
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
import re
import sys
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from twostage import yamlio
from twostage.artifacts import write_text

PACKAGE = "twostage"
# The source that runs: the imported package's own files (a copy of the project run with
# its own src/ on the path hashes its own code).
ROOT = Path(__file__).resolve().parents[1]
ENTRY = "twostage.cli"
# Modules that compute provenance and never a number: they and what they import are no
# job's code, so editing them reruns nothing.
BOOKKEEPING = frozenset(
    {
        "twostage.__main__",
        "twostage.provenance",
        "twostage.provenance.codedeps",
        "twostage.provenance.software",
        "twostage.provenance.versions",
    }
)
REFERENCE = re.compile(rf"^({PACKAGE}(?:\.\w+)*):\w+$")
FILE_NAME = re.compile(r"^[\w.-]{1,100}\.\w+$")


@dataclass(frozen=True)
class Module:
    """What the closure and the hash need from one source file."""

    name: str
    path: Path
    tree: ast.Module  # without docstrings
    imports: frozenset[str]  # twostage modules it may import, whatever the job
    # table → key → role (None: every job selecting the key) → modules the entry names
    tables: dict[str, dict[str, dict[str | None, frozenset[str]]]]
    resolves: frozenset[str]  # the roles of dispatch entries this module resolves
    base_hash: str  # the code but its dispatch entries, with the package data it names
    data: tuple[Path, ...]  # the package data files it names (params_schema.yaml)
    entry_hashes: dict[tuple[str, str], str]  # (table, key) → hash of that entry


def module_path(name: str) -> Path | None:
    """The source file of module ``name`` (a package's ``__init__.py``), if it is ours."""
    if name != PACKAGE and not name.startswith(PACKAGE + "."):
        return None
    parts = name.split(".")[1:]
    if not parts:
        return ROOT / "__init__.py"
    for candidate in (
        ROOT.joinpath(*parts[:-1], parts[-1] + ".py"),
        ROOT.joinpath(*parts, "__init__.py"),
    ):
        if candidate.is_file():
            return candidate
    return None


def _with_parents(name: str) -> list[str]:
    """Importing ``a.b.c`` runs ``a/__init__.py`` and ``a/b/__init__.py`` first."""
    parts = name.split(".")
    return [".".join(parts[: i + 1]) for i in range(len(parts))]


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _resolve_from(node: ast.ImportFrom, current: str, is_package: bool) -> list[str]:
    """Modules an ``from X import a, b`` loads: X, and X.a when a is a submodule."""
    if node.level:
        base = current.split(".")
        base = base if is_package else base[:-1]
        base = base[: len(base) - (node.level - 1)]
        module = ".".join(base + ([node.module] if node.module else []))
    else:
        module = node.module or ""
    found = [module] if module_path(module) else []
    for alias in node.names:
        sub = f"{module}.{alias.name}"
        if module_path(sub):
            found.append(sub)
    return found


# Functions that import the module their first argument names.
IMPORTERS = frozenset({"import_module", "__import__"})


def importer_call(node: ast.AST) -> bool:
    """A call of ``importlib.import_module`` or ``__import__`` (by any prefix)."""
    if not isinstance(node, ast.Call):
        return False
    func = node.func
    name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
    return name in IMPORTERS


def literal_import(node: ast.AST) -> str | None:
    """The module ``import_module("twostage.x")`` / ``__import__("twostage.x")`` imports:
    a literal name is an import like any other. A computed name is not followed (and
    tests/test_dynamic_imports.py allows none outside lazy.py's dispatch-table resolver)."""
    if importer_call(node) and node.args:
        first = node.args[0]
        if isinstance(first, ast.Constant) and isinstance(first.value, str):
            return first.value
    return None


def _references(node: ast.AST) -> set[str]:
    found = set()
    for sub in ast.walk(node):
        if isinstance(sub, ast.Constant) and isinstance(sub.value, str):
            match = REFERENCE.match(sub.value)
            if match and module_path(match.group(1)):
                found.add(match.group(1))
    return found


def _dispatch_tables(tree: ast.Module) -> dict[str, ast.Dict]:
    """Module-level ``NAME = {"key": ... "twostage.x:y" ...}`` displays, by NAME."""
    tables = {}
    for stmt in tree.body:
        if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1:
            target, value = stmt.targets[0], stmt.value
        elif isinstance(stmt, ast.AnnAssign) and stmt.value is not None:
            target, value = stmt.target, stmt.value
        else:
            continue
        if not (isinstance(target, ast.Name) and isinstance(value, ast.Dict)):
            continue
        keys = value.keys
        if all(isinstance(k, ast.Constant) and isinstance(k.value, str) for k in keys) and any(
            _references(v) for v in value.values
        ):
            tables[target.id] = value
    return tables


def _data_files(names: set[str], path: Path) -> tuple[Path, ...]:
    """The package's non-Python files among the file names a module's strings hold."""
    found = set()
    for text in names:
        for candidate in (path.parent / text, ROOT / text):
            if candidate.is_file():
                found.add(candidate.resolve())
    return tuple(sorted(found))


DOCUMENTED = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)


def _strip_docstring(node: ast.AST) -> None:
    body = node.body
    if (
        body
        and isinstance(body[0], ast.Expr)
        and isinstance(body[0].value, ast.Constant)
        and isinstance(body[0].value.value, str)
    ):
        node.body = body[1:] or [ast.Pass()]


@cache
def load(name: str) -> Module:
    path = module_path(name)
    if path is None:
        raise KeyError(f"{name} is not a module of the {PACKAGE} package under {ROOT}")
    tree = ast.parse(path.read_text(), filename=str(path))
    tables = _dispatch_tables(tree)
    in_tables = {id(v) for table in tables.values() for v in table.values}
    is_package = path.name == "__init__.py"
    imports: set[str] = set()
    file_names: set[str] = set()
    # One walk: docstrings go everywhere (neither the closure nor the hash reads them);
    # imports and names count only where they can run for every job ("live").
    todo: list[tuple[ast.AST, bool]] = [(tree, True)]
    while todo:
        node, live = todo.pop()
        if isinstance(node, DOCUMENTED):
            _strip_docstring(node)
        if isinstance(node, ast.If) and _is_type_checking(node):
            todo.extend((child, False) for child in node.body)  # never runs
            todo.extend((child, live) for child in node.orelse)
            continue
        if id(node) in in_tables:
            live = False  # a dispatch entry: only for the jobs that select it
        elif live and isinstance(node, ast.Import):
            imports.update(a.name for a in node.names if module_path(a.name))
        elif live and isinstance(node, ast.ImportFrom):
            imports.update(_resolve_from(node, name, is_package))
        elif live and (imported := literal_import(node)) and module_path(imported):
            imports.add(imported)
        elif live and isinstance(node, ast.Constant) and isinstance(node.value, str):
            match = REFERENCE.match(node.value)
            if match and module_path(match.group(1)):
                imports.add(match.group(1))
            elif FILE_NAME.match(node.value) and not node.value.endswith(".py"):
                file_names.add(node.value)
        todo.extend((child, live) for child in ast.iter_child_nodes(node))
    entries = {
        table: {k.value: _roles(v) for k, v in zip(d.keys, d.values, strict=True)}
        for table, d in tables.items()
    }
    data = _data_files(file_names, path)
    base_hash, entry_hashes = _hashes(tree, tables, data)
    return Module(
        name,
        path,
        tree,
        frozenset(imports),
        entries,
        _resolves(tree),
        base_hash,
        data,
        entry_hashes,
    )


def _roles(entry: ast.expr) -> dict[str | None, frozenset[str]]:
    """The modules a dispatch entry names, by role: a call ``F(key=...)``'s keyword
    arguments are roles ``F.key``; anything else (a plain ``"module:attr"``, positional
    arguments) is for every job that selects the entry."""
    found: dict[str | None, set[str]] = {None: set()}
    if isinstance(entry, ast.Call) and isinstance(entry.func, ast.Name):
        for node in entry.args:
            found[None] |= _references(node)
        for keyword in entry.keywords:
            role = f"{entry.func.id}.{keyword.arg}"
            found.setdefault(role, set()).update(_references(keyword.value))
    else:
        found[None] |= _references(entry)
    return {role: frozenset(modules) for role, modules in found.items() if modules}


def _resolves(tree: ast.Module) -> frozenset[str]:
    """The roles a module-level ``RESOLVES = ("role", ...)`` declares."""
    for stmt in tree.body:
        if (
            isinstance(stmt, ast.Assign)
            and len(stmt.targets) == 1
            and isinstance(stmt.targets[0], ast.Name)
            and stmt.targets[0].id == "RESOLVES"
        ):
            return frozenset(ast.literal_eval(stmt.value))
    return frozenset()


def _hashes(
    tree: ast.Module, tables: dict[str, ast.Dict], data: tuple[Path, ...]
) -> tuple[str, dict[tuple[str, str], str]]:
    """Hash of the syntax tree without its dispatch entries, and of each entry."""
    entry_hashes = {}
    saved = {}
    for table, node in tables.items():
        for k, v in zip(node.keys, node.values, strict=True):
            entry = ast.dump(k) + ast.dump(v)
            entry_hashes[(table, k.value)] = hashlib.sha256(entry.encode()).hexdigest()
        saved[table] = (node.keys, node.values)
        node.keys, node.values = [], []
    try:
        digest = hashlib.sha256(ast.dump(tree).encode())
    finally:
        for table, node in tables.items():
            node.keys, node.values = saved[table]
    for file in data:
        digest.update(f"\0{file.relative_to(ROOT)}\0{_data_text(file)}".encode())
    return digest.hexdigest(), entry_hashes


def closure(selectors: frozenset[str], entry: str = ENTRY) -> tuple[str, ...]:
    """Every project module a job with these selectors can import, sorted."""
    key = f"closure {entry} {' '.join(sorted(selectors))}"
    return tuple(_memo(key, lambda: list(_closure(selectors, entry))))


def _closure(selectors: frozenset[str], entry: str) -> tuple[str, ...]:
    seen: set[str] = set()
    roles: set[str | None] = {None}
    by_role: list[tuple[str | None, frozenset[str]]] = []  # selected entries' references
    todo = [entry]
    while todo:
        while todo:
            name = todo.pop()
            if name in seen or name in BOOKKEEPING:
                continue
            seen.add(name)
            module = load(name)
            roles |= module.resolves
            todo += _with_parents(name)[:-1]
            todo += module.imports
            for table in module.tables.values():
                for key, entry_roles in table.items():
                    if key in selectors:
                        by_role += entry_roles.items()
        # a role's references count once a module resolving it is in (the loop may add one)
        todo = [m for role, modules in by_role if role in roles for m in modules if m not in seen]
    return tuple(sorted(seen))


def _data_text(path: Path) -> str:
    """A data file as its parsed content (YAML/JSON), so its comments and layout do not count."""
    text = path.read_text()
    if path.suffix in (".yaml", ".yml", ".json"):
        return json.dumps(yamlio.safe_load(text), sort_keys=True)
    return text


def code_hash(selectors: frozenset[str]) -> str:
    """Hash of all the code a job with these selectors runs (16 hex digits)."""
    return _memo(f"code_hash {' '.join(sorted(selectors))}", lambda: _code_hash(selectors))


def _code_hash(selectors: frozenset[str]) -> str:
    digest = hashlib.sha256()
    for name in closure(selectors):
        module = load(name)
        selected = sorted(h for (_, key), h in module.entry_hashes.items() if key in selectors)
        digest.update("\0".join([name, module.base_hash, *selected, ""]).encode())
    return digest.hexdigest()[:16]


def files(selectors: frozenset[str]) -> tuple[Path, ...]:
    """The source and package data files of the code a job with these selectors runs."""

    def relative() -> list[str]:
        found = set()
        for name in closure(selectors):
            module = load(name)
            found.add(module.path)
            found.update(module.data)
        return sorted(f.relative_to(ROOT).as_posix() for f in found)

    return tuple(ROOT / f for f in _memo(f"files {' '.join(sorted(selectors))}", relative))


# Parsing the package costs about as much as importing torch, and every job needs its
# code hash: the answers are kept on disk under the digest of every file of the package,
# so a process only parses a package it has not seen. The digest covers each file's path
# and bytes (module sources, package data, this analyser) and the Python that parses them;
# an answer is found again only for exactly the same package.
MEMO_DIR = Path(
    os.environ.get("TWOSTAGE_CODEDEPS_CACHE")
    or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "twostage/codedeps"
)
MEMO_KEEP = 32  # package states kept: the newest, by modification time


@cache
def package_digest() -> str:
    digest = hashlib.sha256(sys.version.encode())
    for path in sorted(ROOT.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts:
            digest.update(f"\0{path.relative_to(ROOT).as_posix()}\0".encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


@cache
def _memo_table() -> dict:
    try:
        return json.loads((MEMO_DIR / f"{package_digest()}.json").read_text())
    except (OSError, ValueError):  # none yet, or unreadable: compute again
        return {}


def _memo(key: str, compute):
    table = _memo_table()
    if key not in table:
        table[key] = compute()
        _memo_write(table)
    return table[key]


def _memo_write(table: dict) -> None:
    """Write the table whole, atomically; a failure only costs the next process a parse.
    Two processes racing lose at most each other's new entries, never correctness."""
    try:
        write_text(MEMO_DIR / f"{package_digest()}.json", json.dumps(table), checksum=False)
        kept = sorted(MEMO_DIR.glob("*.json"), key=lambda f: f.stat().st_mtime, reverse=True)
        for old in kept[MEMO_KEEP:]:
            old.unlink(missing_ok=True)
    except OSError:
        pass


def clear_caches() -> None:
    """Forget parsed sources and answers (a long-lived process that edits code, e.g. a test)."""
    load.cache_clear()
    package_digest.cache_clear()
    _memo_table.cache_clear()
