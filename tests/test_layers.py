"""The package's layers: arrows run down only, and the module-level imports have no cycle.

Every ``twostage`` import counts, at module level or inside a function (a function-level
import is still an arrow a reader follows), except under ``if TYPE_CHECKING:``.
"""

from __future__ import annotations

import ast
import re
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


ROOT = SRC.parent
ARCHITECTURE = ROOT / "docs" / "architecture.md"
TOP_FOLDERS = ("src", "workflow", "params", "tests", "bench", "docs", "scripts")
# The file types of the repository's code, settings and pages: a backticked name of another
# type (model.pt, metrics.json, report.md...) is an artifact under results/, not a file here.
SOURCE_TYPES = (".py", ".smk", ".sh", ".yaml", ".toml", ".rst", ".txt")


def _expand(path: str) -> list[str]:
    """``a/{b,c}/d`` → ``a/b/d``, ``a/c/d``."""
    brace = re.search(r"\{([^{}]*)\}", path)
    if not brace:
        return [path]
    head, tail = path[: brace.start()], path[brace.end() :]
    return [q for alt in brace.group(1).split(",") for q in _expand(head + alt + tail)]


def _repository_files() -> list[str]:
    files = [p for d in TOP_FOLDERS for p in (ROOT / d).rglob("*") if "__pycache__" not in p.parts]
    files += [p for p in ROOT.iterdir() if p.is_file()]
    return [p.relative_to(ROOT).as_posix() for p in files]


def _named_in(text: str) -> set[tuple[str, str | None]]:
    """Every repository path the page names, with the attribute it names in it, if any
    (``data/prepare.py:prepare``).

    Backticked: a path from a top-level folder (``src/twostage/kinds.py``, globs and
    ``{a,b}`` included), one relative to the package or to a folder named before it
    (``train/resume.py``, ``extractors/base.py``) and a bare file name (``vq_step.py``).
    Anywhere else (prose, the layout block): a path from a top-level folder. A name with a
    ``<placeholder>`` is a pattern for a file to add, not a file.
    """
    named: set[tuple[str, str | None]] = set()
    for code in re.findall(r"`([^`\n]+)`", text):
        found = re.fullmatch(r"([\w./{},*-]+?)(?::(\w+))?", code)
        if not found or code.startswith("."):  # `.smk`: a file type, not a file
            continue
        path, attr = found.groups()
        top = path.split("/")[0] in TOP_FOLDERS
        if top or path.endswith(SOURCE_TYPES) or re.fullmatch(r"[\w/]+/[\w.]+\.md", path):
            named.add((path, attr))
    folders = "|".join(TOP_FOLDERS)
    for path in re.findall(rf"(?<![\w./<-])((?:{folders})/[\w./{{}},*-]*[\w/*}}])", text):
        named.add((path, None))
    return named


def _layout_block(text: str) -> set[str]:
    """The files and folders of the page's "Repository layout" block: a line's leading
    names, from the root, or from ``src/twostage/`` when indented."""
    layout = text.split("## Repository layout", 1)[1].split("```", 2)[1]
    named = set()
    for line in layout.splitlines():
        base = "src/twostage/" if line.startswith("  ") else ""
        for i, word in enumerate(line.split()):  # the first word, then the file-like ones
            if not re.fullmatch(r"[\w./-]+" if i == 0 else r"[\w./-]+(?:\.\w+|/)", word):
                break
            named.add(base + word)
    return named


def _exists(path: str, files: list[str]) -> bool:
    """A path from a top-level folder is from the root (a glob matches something); any
    other is the end of some file's or folder's path."""
    for one in _expand(path):
        if one.split("/")[0] in TOP_FOLDERS or "/" not in one.rstrip("/") and one in files:
            if not (list(ROOT.glob(one)) if "*" in one else (ROOT / one).exists()):
                return False
        elif not any(f == one.rstrip("/") or f.endswith("/" + one.rstrip("/")) for f in files):
            return False
    return True


def _defines(path: str, attr: str, files: list[str]) -> bool:
    source = next((f for f in files if f == path or f.endswith("/" + path)), None)
    text = (ROOT / source).read_text() if source else ""
    return bool(re.search(rf"^(?:def|class) {attr}\b|^{attr}\b\s*[:=]", text, re.M))


def test_every_file_the_architecture_page_names_exists():
    files = _repository_files()
    text = ARCHITECTURE.read_text()
    named = _named_in(text)
    paths = {path for path, _ in named} | _layout_block(text)
    assert {"src/twostage/kinds.py", "workflow/rules/common.smk", "src/twostage/cli.py"} <= paths
    missing = sorted(path for path in paths if not _exists(path, files))
    assert not missing, f"docs/architecture.md names files that do not exist: {missing}"
    undefined = sorted(f"{p}:{a}" for p, a in named if a and not _defines(p, a, files))
    assert not undefined, f"docs/architecture.md names what its file does not define: {undefined}"


def test_the_architecture_pages_stage_table_is_the_stage_table():
    """Its "Stages and artifacts" table: every stage of stages.STAGES and the report, each
    once, with the function that runs it."""
    from twostage.cli import COMMANDS
    from twostage.stages import STAGES

    row = re.compile(r"^\| `(\w+)`[^|]*\| [^|]*\| `([\w/]+)\.py:(\w+)` \|", re.M)
    listed = [
        (stage, f"twostage.{module.replace('/', '.')}:{function}")
        for stage, module, function in row.findall(ARCHITECTURE.read_text())
    ]
    functions = {stage: spec.function for stage, spec in STAGES.items()}
    assert sorted(listed) == sorted({**functions, "report": COMMANDS["report"]}.items())
