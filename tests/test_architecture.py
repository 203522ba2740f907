"""The layers of the package (docs/contributing.md): who may import whom, light imports, no private seams."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "scsemiclip"

#: Layer of every top-level module or subpackage -> the scsemiclip layers it may import (bottom to top).
ALLOWED = {
    "_settings": {"_validate"},
    "_docs": set(),
    "_core": {"_validate"},
    "_validate": set(),
    "_keys": set(),
    "_utils": {"_keys", "_validate", "__init__", "_settings"},
    "module": {"_validate", "_core", "_docs", "_settings", "_utils"},
    "train": {"_validate", "_core", "_docs", "_settings", "_utils", "module"},
    "model": {"_keys", "_validate", "_core", "_docs", "_settings", "_utils", "module", "train"},
    "pp": {"_keys", "_validate", "__init__", "_core", "_docs", "_settings", "_utils"},
    "datasets": {"_keys", "_validate", "__init__", "_docs", "_settings", "_utils"},
    "tl": {"_keys", "_validate", "__init__", "_core", "_docs", "_settings", "_utils", "datasets", "model", "module"}
    | {"pp", "train"},
    "pl": {"_keys", "_validate", "__init__", "_docs", "_settings", "_utils", "datasets", "model", "tl"},
    "_cli": {"_validate", "__init__", "_settings", "datasets", "pl", "pp", "tl"},
    "__init__": {"_settings", "datasets", "model", "module", "pl", "pp", "tl", "train"},
}
#: Third-party packages a layer must not import (anywhere, also inside functions).
FORBIDDEN = {
    "_core": {"anndata", "pandas", "scipy", "scvi", "lightning", "scanpy", "mudata", "matplotlib"},
    "_settings": {"numpy", "torch", "anndata", "pandas", "scvi", "lightning", "scanpy"},
    "_validate": {"torch", "anndata", "pandas", "scipy", "scvi", "lightning", "scanpy"},
    "_docs": {"numpy", "torch", "anndata", "pandas", "scvi", "lightning", "scanpy"},
    "module": {"anndata", "pandas", "mudata", "scanpy", "matplotlib"},
    "pp": {"scvi", "lightning", "scanpy"},
}
HEAVY = ("lightning", "scvi", "scanpy")


def _layer(path: Path) -> str:
    rel = path.relative_to(SRC)
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def _imports(path: Path) -> list[tuple[str, tuple[str, ...], int]]:
    """``(absolute module, imported names, line)`` of every import statement of a source file."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = ".".join(("scsemiclip", *path.relative_to(SRC).with_suffix("").parts[:-1]))
    if path.name == "__init__.py":
        package = ".".join(("scsemiclip", *path.relative_to(SRC).parts[:-1]))
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(alias.name, (), node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            out.append((module, tuple(alias.name for alias in node.names), node.lineno))
    return out


SOURCES = sorted(SRC.rglob("*.py"))


def _target_layer(module: str, names: tuple[str, ...]) -> str | None:
    parts = module.split(".")
    if parts[0] != "scsemiclip":
        return None
    if len(parts) == 1:
        # `from scsemiclip import x`: x is a subpackage or a name of the package's __init__
        sub = {n for n in names if n in ALLOWED}
        return next(iter(sub)) if len(sub) == 1 else "__init__"
    return parts[1]


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(SRC)))
def test_layers_import_only_what_is_below(path):
    layer = _layer(path)
    for module, names, line in _imports(path):
        target = _target_layer(module, names)
        if target is None or target == layer:
            continue
        assert target in ALLOWED[layer], f"{path.relative_to(SRC)}:{line}: {layer} may not import {module}"
    for module, _, line in _imports(path):
        top = module.split(".")[0]
        assert top not in FORBIDDEN.get(layer, set()), f"{path.relative_to(SRC)}:{line}: {layer} imports {module}"


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(SRC)))
def test_no_private_names_of_other_packages(path):
    layer = _layer(path)
    for module, names, line in _imports(path):
        parts = module.split(".")
        where = f"{path.relative_to(SRC)}:{line}"
        if parts[0] in ("scvi", "lightning", "torch", "anndata", "scanpy"):
            private = [p for p in (*parts, *names) if p.startswith("_") and not p.startswith("__")]
            assert not private, f"{where}: imports private {module} {names}"
        elif parts[0] == "scsemiclip" and len(parts) > 1 and parts[1] != layer and not parts[1].startswith("_"):
            # another subpackage: only its public names
            private = [p for p in (*parts[2:], *names) if p.startswith("_")]
            assert not private, f"{where}: {layer} reaches into {module} {names}"


def _loaded_after(statement: str) -> dict[str, bool]:
    code = f"import sys, json; {statement}; print(json.dumps({{m: m in sys.modules for m in {HEAVY + ('torch',)!r}}}))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("statement", ["import scsemiclip", "import scsemiclip.pp", "import scsemiclip.datasets"])
def test_light_imports(statement):
    loaded = _loaded_after(statement)
    assert not any(loaded[m] for m in HEAVY), f"{statement} loads {[m for m in HEAVY if loaded[m]]}"
    if statement == "import scsemiclip":
        assert not loaded["torch"]


@pytest.mark.parametrize("statement", ["import scsemiclip.tl", "import scsemiclip.pl"])
def test_tools_and_plots_load_no_training_stack(statement):
    loaded = _loaded_after(statement)
    assert not (loaded["lightning"] or loaded["scvi"]), statement


def test_subpackages_load_on_first_access():
    code = (
        "import sys, scsemiclip as ssc; assert 'scsemiclip.pp' not in sys.modules; ssc.pp.tvn; "
        "assert 'scsemiclip.pp' in sys.modules; print(sorted(dir(ssc)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "'tl'" in out.stdout and "'settings'" in out.stdout
    import scsemiclip

    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        scsemiclip.nope  # noqa: B018
