"""The package's shape (issue 10): no import cycle, no training code in inference, files readable in one sitting.

Imports are read with `ast`, not by importing: every `import` and `from ... import` of a module counts,
also those inside functions (a lazy import is still a dependency, and a cycle through one is still a cycle).
"""
import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "musiclm_mini"
INFERENCE = ("musiclm_mini.musiclm", "musiclm_mini.tokenizers", "musiclm_mini.hierarchy", "musiclm_mini.components",
             "musiclm_mini.__main__", "musiclm_mini.config", "musiclm_mini.checkpoint")
MAX_LINES = 400


def module_name(path: Path, root: Path = PACKAGE) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path, root: Path = PACKAGE) -> set[str]:
    """The package modules `path` imports (relative imports resolved; `from x import y` counts y if a module)."""
    name = module_name(path, root)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    known = {module_name(p, root) for p in root.rglob("*.py")}
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(base + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            targets = [base] + [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]  # musiclm_mini.x.func -> musiclm_mini.x
            if target and target != name and target != root.name:
                out.add(target)
    return out


def import_graph(root: Path = PACKAGE) -> dict[str, set[str]]:
    return {module_name(p, root): imports_of(p, root) for p in sorted(root.rglob("*.py"))}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as [a, b, ..., a], or None (depth-first search)."""
    state: dict[str, int] = {}  # 1 = on the stack, 2 = done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_the_package_has_no_import_cycle():
    assert find_cycle(import_graph()) is None, f"import cycle: {' -> '.join(find_cycle(import_graph()))}"


def test_inference_code_never_imports_training_code():
    graph = import_graph()
    offenders = {m: sorted(t for t in targets if t.startswith("musiclm_mini.train"))
                 for m, targets in graph.items() if m.startswith(INFERENCE)}
    assert not {m: t for m, t in offenders.items() if t}


def test_the_generic_transformer_knows_nothing_of_stages():
    assert imports_of(PACKAGE / "hierarchy" / "transformer.py") <= {"musiclm_mini.config", "musiclm_mini.hierarchy.sampling"}


def test_no_package_file_is_longer_than_400_lines():
    long = {str(p.relative_to(PACKAGE)): n for p in PACKAGE.rglob("*.py")
            if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long


def write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


def test_the_walker_sees_cycles_through_relative_and_lazy_imports(tmp_path):
    pkg = write(tmp_path / "pkg", {"__init__.py": "", "a.py": "from .sub import b\n",
                                   "sub/__init__.py": "", "sub/b.py": "def f():\n    from ..a import g\n"})
    graph = import_graph(pkg)
    assert graph["pkg.a"] == {"pkg.sub", "pkg.sub.b"} and graph["pkg.sub.b"] == {"pkg.a"}
    assert find_cycle(graph) in (["pkg.a", "pkg.sub.b", "pkg.a"], ["pkg.sub.b", "pkg.a", "pkg.sub.b"])
    acyclic = write(tmp_path / "ok", {"__init__.py": "", "a.py": "from . import b\n", "b.py": "import os\n"})
    assert find_cycle(import_graph(acyclic)) is None


@pytest.mark.parametrize("chapter", range(1, 8))
def test_the_package_docstring_maps_every_chapter(chapter):
    import musiclm_mini

    assert f"\n    {chapter}  " in musiclm_mini.__doc__
