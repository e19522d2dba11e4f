"""The layer order of docs/architecture.md, enforced by reading the imports of src/alignkit.

Every `import` / `from ... import` of an alignkit module is collected — at module level, inside
functions and under `if TYPE_CHECKING:` alike, relative imports resolved — and checked:
(a) no import of a higher layer; (b) no import between two different packages of the same layer
(select / train / inference, online / evaluation); (c) no import cycle between modules;
(d) no `from alignkit.x import _name` of another module's private name.
`LAYERS` is the only copy of the table; docs/architecture.md must show it (see
`test_layer_table_is_in_the_architecture_doc`).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "alignkit"
DOC = ROOT / "docs" / "architecture.md"

# top-level folder or root module of alignkit -> layer; imports may only go to the same folder
# or module, to a lower layer, or (root modules only) to another root module of the same layer
LAYERS: dict[str, int] = {
    "errors": 0,
    "io": 0,
    "options": 0,
    "report": 0,
    "papers": 0,
    "package_data": 0,
    "data": 1,
    "runs": 2,
    "distributed": 2,
    "models": 3,
    "model_options": 3,
    "export": 3,
    "objectives": 4,
    "scoring": 5,
    "select": 6,
    "train": 6,
    "inference": 6,
    "rewards": 7,
    "online": 8,
    "evaluation": 8,
    "study": 9,
    "labelling": 9,
    "commands": 10,
    "cli": 11,
    "__main__": 11,
    "__init__": 11,
}


@dataclass(frozen=True)
class Import:
    source: str  # importing module, e.g. alignkit.select.deft
    target: str  # imported alignkit module, e.g. alignkit.scoring.forward
    where: str  # path:line of the import statement


def module_name(rel: str) -> str:
    """alignkit module of a path relative to the package: "select/deft.py" -> alignkit.select.deft."""
    parts = rel.removesuffix(".py").split("/")
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(["alignkit", *parts])


def unit_of(module: str) -> str:
    """The entry of LAYERS a module belongs to: its top-level folder or root module name."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _is_alignkit(module: str) -> bool:
    return module == "alignkit" or module.startswith("alignkit.")


def _is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def scan(
    rel: str, source: str, modules: set[str], prefix: str = ""
) -> tuple[list[Import], list[str]]:
    """Every alignkit import of one file, and its private-name violations (rule d)."""
    name = module_name(rel)
    package = name if rel.endswith("__init__.py") else name.rpartition(".")[0]
    imports: list[Import] = []
    private: list[str] = []
    for node in ast.walk(ast.parse(source, rel)):
        where = f"{prefix}{rel}:{getattr(node, 'lineno', 0)}"
        if isinstance(node, ast.Import):
            imports += [Import(name, a.name, where) for a in node.names if _is_alignkit(a.name)]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if not _is_alignkit(target):
                continue
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                found = Import(name, sub if sub in modules else target, where)
                if found not in imports:
                    imports.append(found)
                if _is_private(alias.name) and target != name:
                    private.append(f"{where}: imports the private name {alias.name} of {target}")
    return imports, private


def check(sources: Mapping[str, str], prefix: str = "") -> list[str]:
    """All violations of sources {path relative to the package: source text}, one per line."""
    modules = {module_name(rel) for rel in sources}
    folders = {rel.split("/")[0] for rel in sources if "/" in rel}
    problems: list[str] = []
    imports: list[Import] = []
    for rel, source in sorted(sources.items()):
        found, private = scan(rel, source, modules, prefix)
        imports += found
        problems += private
    for unit in sorted({unit_of(m) for m in modules} - LAYERS.keys()):
        problems.append(f"{prefix}{unit}: not in the layer table (LAYERS in this test)")
    for imp in imports:
        src, dst = unit_of(imp.source), unit_of(imp.target)
        if src == dst or src not in LAYERS or dst not in LAYERS:
            continue
        if LAYERS[dst] > LAYERS[src]:
            problems.append(
                f"{imp.where}: {src} (layer {LAYERS[src]}) imports {imp.target} of the higher "
                f"layer {dst} ({LAYERS[dst]})"
            )
        elif LAYERS[dst] == LAYERS[src] and (src in folders or dst in folders):
            problems.append(
                f"{imp.where}: {src} imports {imp.target}, but {src} and {dst} are sibling "
                f"packages of layer {LAYERS[src]}"
            )
    problems += cycles(imports, modules)
    return problems


def cycles(imports: list[Import], modules: set[str]) -> list[str]:
    """One line per import cycle (strongly connected component), with the imports in it."""
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for imp in imports:
        if imp.target in modules and imp.target != imp.source:
            graph[imp.source].add(imp.target)
    problems = []
    for component in _strongly_connected(graph):
        if len(component) < 2:
            continue
        edges = sorted(
            f"{i.where} ({i.source} -> {i.target})"
            for i in imports
            if i.source in component and i.target in component and i.source != i.target
        )
        problems.append(f"import cycle between {', '.join(sorted(component))}: {'; '.join(edges)}")
    return problems


def _strongly_connected(graph: Mapping[str, set[str]]) -> Iterator[set[str]]:
    """Tarjan's algorithm, iterative (no recursion limit)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.add(member)
                    if member == node:
                        break
                yield component


def package_sources() -> dict[str, str]:
    return {
        path.relative_to(PACKAGE).as_posix(): path.read_text(encoding="utf-8")
        for path in sorted(PACKAGE.rglob("*.py"))
    }


def layer_table() -> str:
    """The layer order as the markdown table docs/architecture.md must contain."""
    by_layer: dict[int, list[str]] = {}
    for unit, layer in LAYERS.items():
        shown = f"`{unit}/`" if (PACKAGE / unit).is_dir() else f"`{unit}.py`"
        by_layer.setdefault(layer, []).append(shown)
    rows = [f"| {layer} | {', '.join(units)} |" for layer, units in sorted(by_layer.items())]
    return "\n".join(["| layer | folders and root modules |", "|---|---|", *rows])


# ----------------------------------------------------------------------------- tests


def test_imports_follow_the_layer_order():
    problems = check(package_sources(), prefix="src/alignkit/")
    assert not problems, "imports against the layer order (docs/architecture.md):\n" + "\n".join(
        problems
    )


def test_layer_table_is_in_the_architecture_doc():
    table = layer_table()
    assert table in DOC.read_text(encoding="utf-8"), (
        f"docs/architecture.md must contain the layer table of tests/test_architecture.py:\n{table}"
    )


def test_checker_finds_every_kind_of_violation():
    sources = {
        "__init__.py": "",
        "errors.py": "",
        "data/__init__.py": "from .records import Pair\n",
        "data/records.py": "from alignkit.errors import AlignkitError\nPair = 1\n",
        # (a) upward, inside a function and under TYPE_CHECKING
        "models.py": (
            "from typing import TYPE_CHECKING\n"
            "if TYPE_CHECKING:\n"
            "    from alignkit.scoring.forward import PackedBatch\n"
            "def f():\n"
            "    import alignkit.train.trainer\n"
        ),
        "scoring/__init__.py": "",
        "scoring/forward.py": "from ..data import records\nfrom alignkit.data import Pair\n",
        # (b) siblings, via a relative import; (d) a private name
        "select/__init__.py": "",
        "select/deft.py": (
            "from ..train import trainer\nfrom alignkit.scoring.forward import _gather\n"
        ),
        "select/pipeline.py": "from . import deft\nfrom .deft import _helper, keep\n",
        # (c) a cycle held together by a function-level import
        "train/__init__.py": "",
        "train/trainer.py": "from alignkit.train.checkpoint import save\n",
        "train/checkpoint.py": "def save():\n    from alignkit.train import trainer\n",
        "stray.py": "",
    }
    problems = check(sources)
    text = "\n".join(problems)
    assert "models.py:3: models (layer 3) imports alignkit.scoring.forward of the higher" in text
    assert "models.py:5: models (layer 3) imports alignkit.train.trainer" in text
    assert "select/deft.py:1: select imports alignkit.train.trainer" in text
    assert "sibling packages of layer 6" in text
    assert "select/deft.py:2: imports the private name _gather of alignkit.scoring.forward" in text
    assert "select/pipeline.py:2: imports the private name _helper of alignkit.select.deft" in text
    assert "import cycle between alignkit.train.checkpoint, alignkit.train.trainer" in text
    assert "train/checkpoint.py:2 (alignkit.train.checkpoint -> alignkit.train.trainer)" in text
    assert "stray: not in the layer table" in text
    # downward imports, relative imports and imports within a folder are allowed: nothing else
    assert len(problems) == 7, text


def test_public_api_names_resolve_lazily() -> None:
    """Every name of `alignkit.__all__` imports from the module `_API` names; `import alignkit`
    alone loads no stage (the CLI and `python -c 'import alignkit'` stay fast)."""
    import subprocess
    import sys

    import alignkit

    for name in alignkit.__all__:
        assert getattr(alignkit, name) is not None, name
    code = "import sys, alignkit; print(any(m.startswith('alignkit.') for m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
