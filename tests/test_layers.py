"""The package's layers: arrows run down only, and the module-level imports have no cycle.

Every ``twostage`` import counts, at module level or inside a function (a function-level
import is still an arrow a reader follows), except under ``if TYPE_CHECKING:``.
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "twostage"

# The work, one floor per package: none may reach the training loops above it.
BELOW_TRAIN = ("twostage.evaluate", "twostage.sample", "twostage.models")
# The provenance machinery hashes and records; it computes no number of any stage.
DOMAIN = (
    "twostage.data",
    "twostage.train",
    "twostage.sample",
    "twostage.evaluate",
    "twostage.models",
    "twostage.report",
    "twostage.kinds",
)


def _module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, module_level_only: bool = False) -> set[str]:
    """The twostage modules ``path`` imports (``from twostage import x`` names x's module)."""
    tree = ast.parse(path.read_text())
    found: set[str] = set()
    nodes = tree.body if module_level_only else list(ast.walk(tree))
    skipped = {
        id(n)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
        for n in ast.walk(node)
    }
    for node in nodes:
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("twostage")}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("twostage"):
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                is_module = (SRC / Path(*sub.split("."))).with_suffix(".py").is_file() or (
                    SRC / Path(*sub.split(".")) / "__init__.py"
                ).is_file()
                found.add(sub if is_module else node.module)
    return found


def _modules() -> dict[str, Path]:
    return {_module_name(f): f for f in sorted(PACKAGE.rglob("*.py"))}


def _within(name: str, packages: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in packages)


def test_nothing_below_the_trainers_imports_them():
    arrows = [
        f"{name} imports {target}"
        for name, path in _modules().items()
        if _within(name, BELOW_TRAIN)
        for target in sorted(_imports(path))
        if _within(target, ("twostage.train",))
    ]
    assert not arrows, "a layer below train/ reaches up into it:\n" + "\n".join(arrows)


def test_provenance_imports_no_domain_module():
    arrows = [
        f"{name} imports {target}"
        for name, path in _modules().items()
        if _within(name, ("twostage.provenance",))
        for target in sorted(_imports(path))
        if _within(target, DOMAIN)
    ]
    assert "twostage.provenance" in _modules(), "the provenance subpackage is missing"
    assert not arrows, "provenance/ reaches into the domain:\n" + "\n".join(arrows)


def test_module_level_imports_have_no_cycle():
    modules = _modules()
    graph = {
        n: {t for t in _imports(p, True) if t in modules and t != n} for n, p in modules.items()
    }
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt] if nxt in path else [node, nxt]
            if nxt not in state and (cycle := visit(nxt, [*path, nxt])):
                return cycle
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start, [start])):
            raise AssertionError("import cycle: " + " -> ".join(cycle))


def test_the_architecture_page_lists_every_root_module_and_subpackage():
    text = (SRC.parent / "docs" / "architecture.md").read_text()
    layout = text.split("## Repository layout", 1)[1].split("```", 2)[1]
    names = [f.name for f in PACKAGE.glob("*.py") if f.name != "__init__.py"]
    names += [f"{d.name}/" for d in PACKAGE.iterdir() if (d / "__init__.py").is_file()]
    missing = sorted(n for n in names if n not in layout)
    assert not missing, f"docs/architecture.md, Repository layout: add {', '.join(missing)}"


def test_no_module_but_a_kinds_own_tests_its_name():
    """A per-kind fact lives on the kind's entry in kinds.KINDS: outside kinds.py, only the
    kind's own model and trainer modules may compare a kind's name (a family module such
    as the ae/rae/vae trainer telling its members apart)."""
    from twostage.kinds import KINDS

    own: dict[str, set[str]] = {}
    for name, kind in KINDS.items():
        for ref in (kind.model, kind.trainer):
            own.setdefault(ref.split(":")[0], set()).add(name)
    found = []
    for module, path in _modules().items():
        if module == "twostage.kinds":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Compare):
                continue
            sides = [node.left, *node.comparators]
            if any(
                isinstance(s, ast.Subscript) and ast.unparse(s.slice) == "'sampler'" for s in sides
            ):
                continue  # a sampler named like a kind (autoregressive), not a kind
            consts = [s for s in sides if isinstance(s, ast.Constant)]
            consts += [
                e for s in sides if isinstance(s, (ast.Tuple, ast.List, ast.Set)) for e in s.elts
            ]
            named = {c.value for c in consts if isinstance(c, ast.Constant) and c.value in KINDS}
            if named - own.get(module, set()):
                found.append(f"{module}:{node.lineno}: {ast.unparse(node)}")
    assert not found, "a per-kind fact belongs on the kind's entry (kinds.py):\n" + "\n".join(found)


def test_bench_changes_no_attribute_of_the_package():
    """A benchmark drives the package through its functions' arguments (e.g. the token
    trainer's ``build`` and ``on_evaluation``), never by assigning into its modules or
    classes: such a patch changes what every later caller in the process gets."""
    bench = Path(__file__).resolve().parents[1] / "bench"
    patches = []
    for path in sorted(bench.glob("*.py")):
        tree = ast.parse(path.read_text())
        bound = {  # names bound to twostage modules or their members
            (alias.asname or alias.name).split(".")[0]
            for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom | ast.Import)
            and any(
                n.startswith("twostage")
                for n in ([node.module or ""] if isinstance(node, ast.ImportFrom) else [])
                + [a.name for a in node.names]
            )
            for alias in node.names
        }
        for node in ast.walk(tree):
            targets = node.targets if isinstance(node, ast.Assign) else []
            for target in targets:
                root = target
                while isinstance(root, ast.Attribute):
                    root = root.value
                if target is not root and isinstance(root, ast.Name) and root.id in bound:
                    patches.append(f"{path.name}:{node.lineno}: {ast.unparse(target)}")
    assert not patches, patches
