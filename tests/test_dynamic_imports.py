"""No module imports by a name the code hash cannot see.

codedeps.py finds a job's code statically: ``import`` statements, ``"twostage.x:attr"``
strings, literal ``importlib.import_module("twostage.x")``, and dispatch tables (a job
takes the entries its selectors pick). A module name built at run time, say
``importlib.import_module(f"twostage.models.priors.{kind}")``, would import code that no
hash covers: an edit to it would rerun nothing. The project has one way to import by a
computed name, ``twostage.lazy.resolve``, and its argument must come from a dispatch table
that codedeps reads (``STAGES[stage].function``, ``KINDS[kind].model``); a role read from a
table entry (``.model``, ``.trainer``) must be declared in the module's ``RESOLVES``,
else codedeps would not count that role's modules for the jobs that run it.

This test reads every module under src/ and names, by file:line, any other import by a
computed name: ``import_module``/``__import__`` with a non-literal argument, ``exec``/
``eval``, ``runpy``, loading from a file, or a ``resolve`` whose argument is not a table
entry codedeps reads.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from twostage.provenance import codedeps

# The resolver of dispatch-table references: the one place a computed name is imported.
RESOLVER_MODULE = "twostage.lazy"
RESOLVER = "resolve"
# Other ways to run code chosen by a value: none is followed by codedeps. The builtins
# only by their bare names (``re.compile``, ``model.eval()`` import nothing).
OPAQUE_BUILTINS = {"exec", "eval", "compile"}
OPAQUE_CALLS = {
    "run_module",
    "run_path",
    "spec_from_file_location",
    "module_from_spec",
    "exec_module",
    "load_module",
    "find_module",
}


def _module_name(path: Path, root: Path) -> str:
    parts = path.relative_to(root.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _bound_names(tree: ast.Module, module: str) -> tuple[set[str], dict[str, str]]:
    """Names bound to lazy.resolve in this module, and imported names by the module they
    come from (``from twostage.kinds import KINDS`` → KINDS: twostage.kinds)."""
    resolvers, imported = set(), {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and not node.level:
            for alias in node.names:
                imported[alias.asname or alias.name] = node.module
                if node.module == RESOLVER_MODULE and alias.name == RESOLVER:
                    resolvers.add(alias.asname or alias.name)
    if module == RESOLVER_MODULE:
        resolvers.add(RESOLVER)
    return resolvers, imported


def _is_resolver_call(call: ast.Call, resolvers: set[str], imported: dict[str, str]) -> bool:
    func = call.func
    if isinstance(func, ast.Name):
        return func.id in resolvers
    return (
        isinstance(func, ast.Attribute)
        and func.attr == RESOLVER
        and isinstance(func.value, ast.Name)
        and f"{imported.get(func.value.id, '')}.{func.value.id}".endswith(RESOLVER_MODULE)
    )


def _table_reference(arg: ast.expr) -> tuple[str, str | None] | None:
    """``TABLE[...]``, ``TABLE[...][i]`` or ``TABLE[...].role``: (TABLE, role or None)."""
    role = None
    if isinstance(arg, ast.Attribute) and isinstance(arg.value, ast.Subscript):
        role, arg = arg.attr, arg.value
    while isinstance(arg, ast.Subscript):
        arg = arg.value
    return (arg.id, role) if isinstance(arg, ast.Name) else None


def _roles_of(table: ast.Dict, attr: str) -> set[str]:
    """The roles ``F.attr`` that a table's entries ``F(attr=...)`` define."""
    return {
        f"{v.func.id}.{attr}"
        for v in table.values
        if isinstance(v, ast.Call)
        and isinstance(v.func, ast.Name)
        and any(k.arg == attr for k in v.keywords)
    }


def _resolver_problem(
    arg: ast.expr, module: str, tree: ast.Module, imported: dict[str, str]
) -> str | None:
    """Why codedeps cannot see what this ``resolve(arg)`` imports; None if it can."""
    if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
        if codedeps.REFERENCE.match(arg.value):
            return None  # a "twostage.x:attr" string counts as an import of twostage.x
        return f"resolve({arg.value!r}) is no 'twostage.module:attr' reference"
    found = _table_reference(arg)
    if found is None:
        return f"resolve({ast.unparse(arg)}): the reference is not read from a dispatch table"
    name, role = found
    home = imported.get(name, module)
    if codedeps.module_path(home) is None:
        return f"resolve({ast.unparse(arg)}): {name} is not a table of the project"
    tables = codedeps._dispatch_tables(codedeps.load(home).tree)
    if name not in tables:
        return (
            f"resolve({ast.unparse(arg)}): {home}.{name} is not a dispatch table codedeps "
            "reads (a module-level dict of literal keys and 'twostage.module:attr' values)"
        )
    if role is not None:
        roles = _roles_of(tables[name], role)
        declared = codedeps._resolves(tree)
        if not roles & declared:
            return (
                f"resolve({ast.unparse(arg)}) resolves role {' or '.join(sorted(roles))} "
                f"but {module} does not declare it in RESOLVES"
            )
    return None


def unaccounted_imports(root: Path) -> list[str]:
    """``file:line: what`` for every import by a name codedeps does not follow, in the
    package at ``root`` (a copy of src/twostage in the tests that add one)."""
    found = []
    for path in sorted(root.rglob("*.py")):
        module = _module_name(path, root)
        tree = ast.parse(path.read_text(), filename=str(path))
        resolvers, imported = _bound_names(tree, module)
        where = f"{path.relative_to(root.parent)}"
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            problem = None
            if codedeps.importer_call(node):
                literal = codedeps.literal_import(node)
                in_resolver = module == RESOLVER_MODULE
                if literal is None and not in_resolver:
                    problem = f"{ast.unparse(node)} imports a computed module name"
            elif name in OPAQUE_CALLS or (isinstance(func, ast.Name) and name in OPAQUE_BUILTINS):
                problem = f"{ast.unparse(node)} runs code codedeps cannot follow"
            elif _is_resolver_call(node, resolvers, imported) and module != RESOLVER_MODULE:
                problem = _resolver_problem(node.args[0], module, tree, imported)
            if problem:
                found.append(f"{where}:{node.lineno}: {problem}")
    return found


def test_every_import_by_a_computed_name_is_a_dispatch_table_entry():
    problems = unaccounted_imports(codedeps.ROOT)
    assert not problems, (
        "imports the code hash cannot see (use a dispatch table read with "
        "twostage.lazy.resolve, see src/twostage/provenance/codedeps.py):\n" + "\n".join(problems)
    )


def test_the_project_s_dynamic_imports_are_all_checked():
    """The checker sees today's dynamic imports: the stage table's function and job roles,
    cli.py's command table and the kind table's model and trainer roles (else it would
    pass by seeing nothing)."""
    seen = []
    for path in sorted(codedeps.ROOT.rglob("*.py")):
        module = _module_name(path, codedeps.ROOT)
        tree = ast.parse(path.read_text())
        resolvers, imported = _bound_names(tree, module)
        seen += [
            f"{module}:{ast.unparse(n.args[0])}"
            for n in ast.walk(tree)
            if isinstance(n, ast.Call) and _is_resolver_call(n, resolvers, imported)
        ]
    assert {
        "twostage.cli:STAGES[stage].function",
        "twostage.plan:STAGES[stage].job",
        "twostage.cli:COMMANDS['dvc-yaml']",
        "twostage.models.priors:KINDS[spec['kind']].model",
        "twostage.models.autoencoders:KINDS[spec['kind']].model",
        "twostage.train.dispatch:KINDS[p.prior(name)['kind']].trainer",
    } <= set(seen), seen


def _append(path: Path, text: str) -> int:
    """Append lines to a module; the line number of the last one."""
    path.write_text(path.read_text() + text)
    return len(path.read_text().splitlines())


@pytest.mark.parametrize(
    "line, why",
    [
        # the line of issue 27: a sampler that picks a prior's module by its kind
        ('importlib.import_module(f"twostage.models.priors.{KIND}")', "computed module name"),
        ('__import__("twostage.models.priors." + KIND)', "computed module name"),
        ('resolve(f"twostage.models.priors.{KIND}:build")', "not read from a dispatch table"),
        ("resolve(KINDS[KIND].trainer)", "does not declare it in RESOLVES"),
        ("exec(f'import twostage.models.priors.{KIND}')", "cannot follow"),
    ],
)
def test_a_computed_import_is_named_by_file_and_line(source: Path, line: str, why: str):
    sampler = source / "sample" / "sampler.py"
    header = (
        "\nimport importlib\n"
        "from twostage.kinds import KINDS\n"
        "from twostage.lazy import resolve\n"
        "KIND = 'absorbing'\n"
    )
    at = _append(sampler, f"{header}{line}\n")
    problems = unaccounted_imports(source)
    assert len(problems) == 1 and problems[0].startswith(f"twostage/sample/sampler.py:{at}: "), (
        problems
    )
    assert why in problems[0]


def test_a_literal_import_module_is_code_of_the_job(source: Path):
    """``importlib.import_module("twostage.x")`` with a literal name is an import: the
    module joins the closure of the module that calls it (and the check lets it pass)."""
    sampler = source / "sample" / "sampler.py"
    _append(sampler, '\nimport importlib\nimportlib.import_module("twostage.models.priors.gmm")\n')
    assert "twostage.models.priors.gmm" in codedeps.load("twostage.sample.sampler").imports
    assert not unaccounted_imports(source)
