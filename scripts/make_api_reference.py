"""Write docs/api.md: one line per public function and class of every public module of minigcnc.

    python scripts/make_api_reference.py              # rewrites docs/api.md
    python scripts/make_api_reference.py --out FILE   # writes elsewhere (the test compares the two)

The reference is read from the source with ``ast``: nothing is imported, so optional dependencies (CuPy, JAX,
Dask) need not be installed and the output depends on the source text alone (deterministic). Rules:

- public module: every ``.py`` file of the package with no path component starting with ``_``
  (``__init__.py`` gives the package's own name); ``__main__`` modules are skipped;
- public name: a function or class defined at module level (also inside a top-level ``if``/``try``), not
  imported, whose name has no leading underscore; in ``figure*`` modules only ``main``;
- one line each, `` `name(signature)` — first line of the docstring``, in source order, under a heading per
  module (sorted by dotted name) with the first line of the module docstring. A class's signature is its
  ``__init__``'s without ``self``, or its annotated fields for a dataclass or NamedTuple.
"""
import argparse
import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "minigcnc"
OUT = ROOT / "docs" / "api.md"
NO_DOCSTRING = "(no docstring)"
HEADER = """# API reference

One line per public function and class of every public module of `minigcnc`: its signature and the first line
of its docstring. Generated from the source by `python scripts/make_api_reference.py`; do not edit by hand
(`tests/test_api_reference.py` checks that this file is up to date). The mathematics is in
[theory.md](theory.md).
"""


def public_modules(package=PACKAGE):
    """[(dotted name, path)] of the package's public modules, sorted by name."""
    found = []
    for path in package.rglob("*.py"):
        parts = path.relative_to(package.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        if parts[-1] == "__main__" or any(p.startswith("_") for p in parts):
            continue
        found.append((".".join(parts), path))
    return sorted(found)


def first_line(doc):
    """The first non-empty line of a docstring, or None."""
    for line in (doc or "").strip().splitlines():
        if line.strip():
            return line.strip()
    return None


def top_level_definitions(body):
    """Function and class definitions of a module body, descending into top-level if/try blocks."""
    for node in body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            yield node
        elif isinstance(node, ast.If):
            yield from top_level_definitions(node.body)
            yield from top_level_definitions(node.orelse)
        elif isinstance(node, ast.Try):
            for block in (node.body, *(h.body for h in node.handlers), node.orelse, node.finalbody):
                yield from top_level_definitions(block)


def _is_record(node):
    """A dataclass or NamedTuple: its fields are its constructor's parameters."""
    for d in node.decorator_list:
        target = d.func if isinstance(d, ast.Call) else d
        if ast.unparse(target).split(".")[-1] == "dataclass":
            return True
    return any(ast.unparse(b).split(".")[-1] == "NamedTuple" for b in node.bases)


def _field_default(value):
    """How a field's default reads: ``field(default=x)`` -> x, ``field(default_factory=f)`` -> <factory>."""
    if isinstance(value, ast.Call) and ast.unparse(value.func).split(".")[-1] == "field":
        for kw in value.keywords:
            if kw.arg == "default":
                return ast.unparse(kw.value)
            if kw.arg == "default_factory":
                return "<factory>"
        return None
    return ast.unparse(value)


def class_signature(node):
    """The constructor's parameters of a class, as source text."""
    if _is_record(node):
        fields = []
        for item in node.body:
            if isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
                if ast.unparse(item.annotation).split("[")[0].split(".")[-1] == "ClassVar":
                    continue
                text = f"{item.target.id}: {ast.unparse(item.annotation)}"
                default = _field_default(item.value) if item.value is not None else None
                fields.append(text if default is None else f"{text} = {default}")
        return ", ".join(fields)
    for item in node.body:
        if isinstance(item, ast.FunctionDef) and item.name == "__init__":
            args = item.args
            positional = args.posonlyargs + args.args
            if positional and positional[0].arg == "self":
                trimmed = ast.arguments(posonlyargs=args.posonlyargs[1:] if args.posonlyargs else [],
                                        args=args.args[1:] if not args.posonlyargs else args.args,
                                        vararg=args.vararg, kwonlyargs=args.kwonlyargs, kw_defaults=args.kw_defaults,
                                        kwarg=args.kwarg, defaults=args.defaults)
                return ast.unparse(trimmed)
            return ast.unparse(args)
    return "..."  # the constructor is inherited


def module_entries(name, path):
    """(module docstring's first line, [(name, signature, first docstring line or None)])."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    only_main = name.split(".")[-1].startswith("figure")
    entries, seen = [], set()
    for node in top_level_definitions(tree.body):
        if node.name.startswith("_") or node.name in seen or (only_main and node.name != "main"):
            continue
        seen.add(node.name)
        signature = class_signature(node) if isinstance(node, ast.ClassDef) else ast.unparse(node.args)
        entries.append((node.name, signature, first_line(ast.get_docstring(node))))
    return first_line(ast.get_docstring(tree)), entries


def reference(package=PACKAGE):
    """{dotted module name: (module note, entries)} for every public module."""
    return {name: module_entries(name, path) for name, path in public_modules(package)}


def missing_docstrings(package=PACKAGE):
    """Sorted ``module.name`` of every public function or class without a docstring (modules: ``module``)."""
    missing = []
    for module, (note, entries) in reference(package).items():
        if note is None:
            missing.append(module)
        missing += [f"{module}.{name}" for name, _, doc in entries if doc is None]
    return sorted(missing)


def render(package=PACKAGE):
    """The text of docs/api.md."""
    lines = [HEADER]
    for module, (note, entries) in reference(package).items():
        lines.append(f"## `{module}`\n")
        lines.append(f"{note or NO_DOCSTRING}\n")
        for name, signature, doc in entries:
            lines.append(f"- `{name}({signature})` — {doc or NO_DOCSTRING}")
        if entries:
            lines.append("")
    return "\n".join(lines).rstrip("\n") + "\n"


def main(argv=None):
    """Write the API reference to docs/api.md (or ``--out``)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT, help=f"where to write (default {OUT.relative_to(ROOT)})")
    args = parser.parse_args(argv)
    text = render()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text, encoding="utf-8")
    missing = missing_docstrings()
    print(f"wrote {args.out} ({len(reference())} modules)")
    if missing:
        print(f"{len(missing)} public names without a docstring: {', '.join(missing)}", file=sys.stderr)


if __name__ == "__main__":
    main()
