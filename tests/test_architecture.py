"""The layering the code promises, checked on the source with ``ast`` (every import, also those inside functions):

* ``core/`` imports nothing from ``stream/`` or ``tools/``; ``stream/`` imports nothing from ``tools/``;
* no import cycle between the modules of ``core/``, ``stream/`` and ``tools/``.

Run it as a script (``python tests/test_architecture.py``) to print the module graph's summary.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("core", "stream", "tools")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def project_modules() -> dict[str, Path]:
    return {module_name(p): p for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))}


def imports_of(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The project modules ``name`` imports (the named module: ``from a.b import c`` is ``a.b.c`` when
    that is a module, else ``a.b``)."""
    is_pkg = path.name == "__init__.py"
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                pkg = name.split(".") if is_pkg else name.split(".")[:-1]
                pkg = pkg[: len(pkg) - (node.level - 1)]
                base = ".".join(pkg + ([base] if base else []))
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        else:
            continue
        for t in targets:
            while t and t not in known:  # `import a.b.c` of a name inside a module: its module
                t = t.rpartition(".")[0]
            if t and t != name:
                out.add(t)
    return out


def graph() -> dict[str, set[str]]:
    known = project_modules()
    return {m: imports_of(m, p, known) for m, p in known.items()}


def cycles(g: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = 0
    for root in g:
        if root in index:
            continue
        work = [(root, iter(sorted(g[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on.add(root)
        while work:
            v, it = work[-1]
            w = next(it, None)
            if w is None:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[v])
                if low[v] == index[v]:
                    comp = []
                    while True:
                        x = stack.pop()
                        on.discard(x)
                        comp.append(x)
                        if x == v:
                            break
                    if len(comp) > 1:
                        out.append(sorted(comp))
            elif w not in index:
                index[w] = low[w] = counter
                counter += 1
                stack.append(w)
                on.add(w)
                work.append((w, iter(sorted(g.get(w, ())))))
            elif w in on:
                low[v] = min(low[v], index[w])
    return out


def layer_violations(g: dict[str, set[str]]) -> list[str]:
    forbidden = {"core": ("stream", "tools"), "stream": ("tools",)}
    bad = []
    for m, deps in sorted(g.items()):
        for d in sorted(deps):
            if d.split(".")[0] in forbidden.get(m.split(".")[0], ()):
                bad.append(f"{m} imports {d}")
    return bad


def test_the_checker_finds_a_cycle_and_a_layer_violation():
    g = {"core.a": {"core.b"}, "core.b": {"core.c"}, "core.c": {"core.a", "stream.x"}, "stream.x": set()}
    assert cycles(g) == [["core.a", "core.b", "core.c"]]
    assert layer_violations(g) == ["core.c imports stream.x"]


def test_layers_are_respected():
    assert layer_violations(graph()) == []


def test_no_import_cycle():
    assert cycles(graph()) == []


if __name__ == "__main__":
    g = graph()
    edges = sum(len(v) for v in g.values())
    print(f"{len(g)} modules in {', '.join(PACKAGES)}; {edges} project imports (incl. imports inside functions)")
    print(f"layer violations: {layer_violations(g) or 'none'}")
    print(f"import cycles: {cycles(g) or 'none'}")
    sys.exit(1 if layer_violations(g) or cycles(g) else 0)
