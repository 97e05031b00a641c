"""The layout's rules, checked on the source: data flows one way and every file keeps one job.

- no module imports or calls a private (``_name``) of another module;
- no figure module imports another figure module;
- one atomic writer (``checks.write_atomically``), one rng coercer (``checks.as_rng``);
- each test file mirrors one module or one figure; no test asserts a wall-clock time;
- the public names of ``minigcnc`` are importable, listed by ``dir``, and submodules are attributes.
"""
import ast
import importlib
import re
from pathlib import Path

import pytest

import minigcnc

PACKAGE = Path(minigcnc.__file__).parent
TESTS = Path(__file__).parent


def modules():
    """{dotted module name: parsed tree} of every module of the package."""
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE.parent).with_suffix("")
        name = ".".join(rel.parts)
        if name.endswith(".__init__"):
            name = name[: -len(".__init__")]
        out[name] = (path, ast.parse(path.read_text()))
    return out


def resolve(module, level, target):
    """The absolute name of a relative import ``from <level dots><target> import ...`` inside ``module``."""
    package = module.split(".") if (PACKAGE / Path(*module.split(".")[1:]) / "__init__.py").exists() \
        else module.split(".")[:-1]
    base = package[: len(package) - (level - 1)] if level else []
    return ".".join(base + ([target] if target else [])) if level else target


def private_uses(name, tree):
    """Private names of *other* modules that ``name`` imports or reaches through an attribute."""
    found = []
    aliases = {}  # local name -> absolute module it refers to
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            source = resolve(name, node.level, node.module)
            for a in node.names:
                if a.name.startswith("_") and not a.name.startswith("__") and source != name:
                    found.append(f"from {source} import {a.name}")
                aliases[a.asname or a.name] = f"{source}.{a.name}"
        elif isinstance(node, ast.Import):
            for a in node.names:
                aliases[a.asname or a.name.split(".")[0]] = a.name if a.asname else a.name.split(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__"):
            if isinstance(node.value, ast.Name) and aliases.get(node.value.id, "").startswith("minigcnc"):
                found.append(f"{node.value.id}.{node.attr}")
    return found


def test_no_module_imports_or_calls_a_private_name_of_another_module():
    bad = {name: uses for name, (_, tree) in modules().items() if (uses := private_uses(name, tree))}
    assert not bad, f"private names used across modules: {bad}"


def test_no_figure_module_imports_another_figure_module():
    for name, (_, tree) in modules().items():
        if not name.split(".")[-1].startswith("figure"):
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                source = resolve(name, node.level, node.module) or ""
                imported = [source] + [f"{source}.{a.name}" for a in node.names]  # a module, or a module's member
                assert not any(s in modules() and s.split(".")[-1].startswith("figure") for s in imported), \
                    (name, source)
            elif isinstance(node, ast.Import):
                assert not any(a.name.split(".")[-1].startswith("figure") for a in node.names), name


def test_one_atomic_writer_and_one_rng_coercer():
    for name, (path, _) in modules().items():
        text = path.read_text()
        if name != "minigcnc.checks":
            assert "os.replace(" not in text, f"{name} renames files itself; use checks.write_atomically"
            assert not re.search(r"isinstance\(\w+, (onp|np|numpy)\.random\.Generator\)", text), \
                f"{name} coerces an rng itself; use checks.as_rng"


def test_every_test_file_mirrors_one_module_or_figure():
    names = {n.split(".")[-1] for n in modules()} | {"_".join(n.split(".")[1:]) for n in modules()}
    themes = {"layout", "readme", "gpu", "gpu_dryrun", "strict_device", "notebook", "api_reference"}
    for path in TESTS.glob("test_*.py"):
        stem = path.stem[len("test_"):]
        assert stem in names or stem in themes, f"{path.name} mirrors no module of the package"


def test_no_test_asserts_a_wall_clock_time():
    for path in TESTS.glob("test_*.py"):
        for line in path.read_text().splitlines():
            assert not re.search(r"assert .*time\.(time|perf_counter|monotonic)\(\)", line), f"{path.name}: {line}"


def test_the_public_names_are_importable_and_listed_by_dir():
    listed = dir(minigcnc)
    for module, names in minigcnc.LAZY.items():
        for name in names:
            assert name in listed
            assert getattr(minigcnc, name) is getattr(importlib.import_module(f"minigcnc.{module}"), name)
    for sub in minigcnc.SUBMODULES:
        assert sub in listed


def test_a_submodule_is_an_attribute_after_import_minigcnc():
    assert callable(minigcnc.gc.geometric_complexity)
    assert minigcnc.collapse.cdnv is minigcnc.cdnv
    with pytest.raises(AttributeError, match="no attribute 'nonsense'"):
        minigcnc.nonsense  # noqa: B018
