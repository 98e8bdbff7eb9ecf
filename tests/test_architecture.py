"""The layout's promises, read off the source with ``ast`` (no imports run):

* no private (``_name``) module or name is imported from another package;
* ``edgekit.convert`` never imports the zoo, and the runtime never imports the converter;
* packages import each other in one direction only (no cycles), and so do modules;
* nothing under ``edgekit.runtime`` imports TensorFlow except the backends whose engine *is*
  TensorFlow (TF-TRT; LiteRT's last-resort ``tf.lite``), and only inside functions.

A "package" here is a top-level unit of ``edgekit``: ``edgekit.runtime``, ``edgekit.convert``,
``edgekit.calibration``, ``edgekit.zoo``, ``edgekit.cli``, or a top-level module such as
``edgekit.formats``.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PKG = SRC / "edgekit"
HEAVY = {"tensorflow", "keras", "tf_keras", "tensorflow_model_optimization", "tf2onnx"}
# Runtime backends whose engine is TensorFlow itself; they import it lazily, inside functions.
TF_ENGINE_BACKENDS = {"edgekit.runtime.backends.tftrt", "edgekit.runtime.backends.litert"}


@dataclass(frozen=True)
class Import:
    importer: str  # the module doing the import
    module: str  # the module imported (resolved, absolute)
    names: tuple[str, ...]  # names taken from it (``from m import a, b``); () for ``import m``
    top_level: bool  # at module level (runs on import), not inside a function
    line: int


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_package(name: str) -> bool:
    return (SRC / name.replace(".", "/") / "__init__.py").is_file()


def _walk(tree: ast.AST, in_function: bool = False):
    for node in ast.iter_child_nodes(tree):
        inner = in_function or isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node, in_function
        yield from _walk(node, inner)


def _imports() -> list[Import]:
    out = []
    for path in sorted(PKG.rglob("*.py")):
        name = _module_name(path)
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        tree = ast.parse(path.read_text(), filename=str(path))
        for node, in_function in _walk(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    out.append(Import(name, alias.name, (), not in_function, node.lineno))
                continue
            base = node.module or ""
            if node.level:  # relative import: resolve against the importing package
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            names = tuple(a.name for a in node.names)
            # ``from pkg import mod`` imports a module, not a name: record it as the module.
            mods = [f"{base}.{n}" for n in names if _is_package(f"{base}.{n}") or (SRC / f"{base}.{n}".replace(".", "/")).with_suffix(".py").is_file()]
            for m in mods:
                out.append(Import(name, m, (), not in_function, node.lineno))
            rest = tuple(n for n in names if f"{base}.{n}" not in mods)
            if rest or not mods:
                out.append(Import(name, base, rest, not in_function, node.lineno))
    return out


IMPORTS = _imports()
# ``from edgekit import __version__`` reads a constant, not an idea: it makes no dependency.
OURS = [i for i in IMPORTS if i.module.split(".")[0] == "edgekit"
        and not (i.names and all(n.startswith("__") for n in i.names))]


def unit(module: str) -> str:
    """The top-level unit a module belongs to (``edgekit.runtime.bench.sweep`` -> ``edgekit.runtime``)."""
    parts = module.split(".")
    return ".".join(parts[:2]) if len(parts) > 1 else module


def _private_parts(module: str) -> list[str]:
    return [p for p in module.split(".") if p.startswith("_") and not p.startswith("__")]


def test_the_walk_sees_the_imports_we_know_of():
    # Guards the test itself: an ast walk that found nothing would pass everything below.
    assert len(OURS) > 150
    assert any(i.importer == "edgekit.runtime.loader" and i.module.startswith("edgekit.runtime.backends") for i in OURS)
    assert any(not i.top_level for i in OURS)  # lazy imports inside functions are seen too


def test_no_private_name_is_imported_across_packages():
    bad = []
    for i in OURS:
        if unit(i.importer) == unit(i.module):
            continue
        private_mod = _private_parts(i.module)
        private_names = [n for n in i.names if n.startswith("_") and not n.startswith("__")]
        if private_mod or private_names:
            bad.append(f"{i.importer}:{i.line} imports {i.module} {private_names or ''}")
    assert not bad, "private names imported across packages:\n" + "\n".join(bad)


def test_convert_never_imports_the_zoo_and_runtime_never_imports_convert():
    bad = [f"{i.importer}:{i.line} -> {i.module}" for i in OURS
           if (unit(i.importer) == "edgekit.convert" and unit(i.module) in ("edgekit.zoo", "edgekit.zoo"))
           or (unit(i.importer) == "edgekit.runtime" and unit(i.module) in ("edgekit.convert", "edgekit.zoo", "edgekit.zoo"))
           or (unit(i.importer) == "edgekit.calibration" and unit(i.module) in ("edgekit.convert", "edgekit.zoo", "edgekit.runtime"))]
    assert not bad, "\n".join(bad)


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected component with more than one node (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in list(edges):
        if v not in index:
            visit(v)
    return out


def test_packages_import_each_other_in_one_direction():
    edges: dict[str, set[str]] = {}
    for i in OURS:
        a, b = unit(i.importer), unit(i.module)
        if a != b:
            edges.setdefault(a, set()).add(b)
    assert not _cycles(edges), f"import cycles between packages: {_cycles(edges)}"


def test_modules_import_each_other_in_one_direction():
    # A submodule importing names from its own package's __init__ (which re-exports it) is the
    # normal shape of a package, not a cycle between ideas: those edges are left out.
    edges: dict[str, set[str]] = {}
    for i in OURS:
        if i.importer.startswith(i.module + ".") and _is_package(i.module):
            continue
        if i.module.startswith(i.importer + ".") and _is_package(i.importer):
            continue  # a package's __init__ re-exporting its own submodules
        edges.setdefault(i.importer, set()).add(i.module)
    cycles = _cycles(edges)
    assert not cycles, f"import cycles between modules: {cycles}"


def test_runtime_imports_tensorflow_only_in_tf_engine_backends_and_lazily():
    bad = [f"{i.importer}:{i.line} -> {i.module}" for i in IMPORTS
           if unit(i.importer) == "edgekit.runtime" and i.module.split(".")[0] in HEAVY
           and (i.importer not in TF_ENGINE_BACKENDS or i.top_level)]
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("package", ["edgekit.runtime", "edgekit.calibration", "edgekit.cli", "edgekit.zoo"])
def test_light_packages_import_nothing_heavy_at_module_level(package):
    # TensorFlow and friends load only inside the functions that need them, so `edgekit bench` on a
    # Raspberry Pi and `import edgekit.zoo` for listing never pay for them.
    bad = [f"{i.importer}:{i.line} -> {i.module}" for i in IMPORTS
           if unit(i.importer) == package and i.top_level and i.module.split(".")[0] in HEAVY]
    assert not bad, "\n".join(bad)
