"""Write docs/api.md: the top-level names, the metrics a run records, then one line per public function and class
of every public module of minigcnc, in reading order.

    python scripts/make_api_reference.py              # rewrites docs/api.md
    python scripts/make_api_reference.py --out FILE   # writes elsewhere (the test compares the two)

The modules are read from the source with ``ast``: none is imported for them, so optional dependencies (CuPy,
JAX, Dask) need not be installed and the output depends on the source text alone (deterministic). Rules:

- public module: every ``.py`` file of the package with no path component starting with ``_``
  (``__init__.py`` gives the package's own name); ``__main__`` modules are skipped;
- public name: a function or class defined at module level (also inside a top-level ``if``/``try``), not
  imported, whose name has no leading underscore; in ``figure*`` modules only ``main``;
- one line each, `` `name(signature)` — first line of the docstring``, in source order, under a heading per
  module with the first line of the module docstring. A class's signature is its ``__init__``'s without
  ``self``, or its annotated fields for a dataclass or NamedTuple;
- the modules come in reading order (``READING_ORDER``): the library from the array backend up to the data,
  then the engine, the figures, ``reproduce`` and the benchmarks last; a module the list does not name comes
  after the others of its package (its most specific pattern), by name;
- at the top: the names ``import minigcnc`` gives (``minigcnc/__init__.py``: its imports, ``LAZY`` and
  ``SUBMODULES``), and the table of the metrics a run records. The metric keys are those of one measurement
  (``measure.measure`` on a tiny untrained run with target classes, few-shot episodes, the probe and every
  registered extra: the one place minigcnc is imported), each with the clause of ``measure.py``'s docstring
  that names it (the docstring of its extra's function for an extra's keys).
"""
import argparse
import ast
import fnmatch
import re
import sys
from functools import lru_cache
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "minigcnc"
OUT = ROOT / "docs" / "api.md"
NO_DOCSTRING = "(no docstring)"
HEADER = """# API reference

The names `import minigcnc` gives, the metrics a run records, then one line per public function and class of
every public module of `minigcnc` (its signature and the first line of its docstring), in reading order: the
library from the array backend up to the data, the experiment engine, the figures, `reproduce`, the benchmarks.
Generated from the source by `python scripts/make_api_reference.py`; do not edit by hand
(`tests/test_api_reference.py` checks that this file is up to date). The mathematics is in
[theory.md](theory.md).
"""


# the order a reader meets the modules in: exact names, then patterns for modules not named here
READING_ORDER = [
    "minigcnc", "minigcnc.backend", "minigcnc.ops", "minigcnc.layers", "minigcnc.models", "minigcnc.train",
    "minigcnc.threads", "minigcnc.jacobians", "minigcnc.gc", "minigcnc.classes", "minigcnc.collapse",
    "minigcnc.bounds", "minigcnc.fewshot", "minigcnc.checks", "minigcnc.data", "minigcnc.data.*",
    "minigcnc.experiments", "minigcnc.experiments.config", "minigcnc.experiments.prepare",
    "minigcnc.experiments.measure", "minigcnc.experiments.cache", "minigcnc.experiments.run",
    "minigcnc.experiments.grid", "minigcnc.experiments.sweep",
    "minigcnc.experiments.dask_runner", "minigcnc.experiments.progress", "minigcnc.experiments.history",
    "minigcnc.experiments.stats", "minigcnc.experiments.claims", "minigcnc.experiments.table",
    "minigcnc.experiments.plotting", "minigcnc.experiments.presets",
    "minigcnc.experiments.cli", "minigcnc.experiments.driver", "minigcnc.experiments.*",
    "minigcnc.registry", "minigcnc.figure*", "minigcnc.reproduce",
    "minigcnc.fused", "minigcnc.fast_step", "minigcnc.jacobian_passes", "minigcnc.*",  # speed code, off the path
    "minigcnc.bench", "minigcnc.bench.train", "minigcnc.bench.gc", "minigcnc.bench.estimators",
    "minigcnc.bench.collapse", "minigcnc.bench.threads", "minigcnc.bench.floor", "minigcnc.bench.gpu",
    "minigcnc.bench.*",
]


def reading_rank(name):
    """(position in ``READING_ORDER``, name): the entry naming the module, else its most specific pattern."""
    if name in READING_ORDER:
        return READING_ORDER.index(name), name
    patterns = [p for p in READING_ORDER if "*" in p and fnmatch.fnmatchcase(name, p)]
    return READING_ORDER.index(max(patterns, key=len)) if patterns else len(READING_ORDER), name


def public_modules(package=PACKAGE):
    """[(dotted name, path)] of the package's public modules, in reading order (``reading_rank``)."""
    found = []
    for path in package.rglob("*.py"):
        parts = path.relative_to(package.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        if parts[-1] == "__main__" or any(p.startswith("_") for p in parts):
            continue
        found.append((".".join(parts), path))
    return sorted(found, key=lambda item: reading_rank(item[0]))


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


@lru_cache(maxsize=4)
def reference(package=PACKAGE):
    """{dotted module name: (module note, entries)} for every public module (read once per package)."""
    return {name: module_entries(name, path) for name, path in public_modules(package)}


def missing_docstrings(package=PACKAGE):
    """Sorted ``module.name`` of every public function or class without a docstring (modules: ``module``)."""
    missing = []
    for module, (note, entries) in reference(package).items():
        if note is None:
            missing.append(module)
        missing += [f"{module}.{name}" for name, _, doc in entries if doc is None]
    return sorted(missing)


def top_level_names(package=PACKAGE):
    """[(name, module it comes from)] of ``import minigcnc``: the names its ``__init__.py`` imports, then the lazy
    ones (``LAZY``), then the submodules (``SUBMODULES``), in source order."""
    tree = ast.parse((package / "__init__.py").read_text(encoding="utf-8"))
    names = []
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            names += [(a.asname or a.name, f"{package.name}.{node.module}") for a in node.names]
        elif isinstance(node, ast.Assign) and [ast.unparse(t) for t in node.targets] == ["LAZY"]:
            names += [(name, f"{package.name}.{module}") for module, lazy in ast.literal_eval(node.value).items()
                      for name in lazy]
        elif isinstance(node, ast.Assign) and [ast.unparse(t) for t in node.targets] == ["SUBMODULES"]:
            names += [(sub, f"{package.name}.{sub}") for sub in ast.literal_eval(node.value)]
    return names


def first_docstring_line(module, name, package=PACKAGE):
    """The first docstring line of ``name`` as ``module`` offers it: defined there, or imported there from another
    module of the package (followed to its definition); a submodule's own docstring line."""
    ref = reference(package)
    if module.rpartition(".")[2] == name and module in ref:  # a submodule
        return ref[module][0]
    found = next((doc for n, _, doc in ref.get(module, (None, []))[1] if n == name), None)
    if found or module not in ref:
        return found
    path = dict(public_modules(package))[module]
    parts = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.ImportFrom) and node.level and any(a.name == name and not a.asname for a in node.names):
            source = ".".join(parts[: len(parts) - node.level + 1] + ([node.module] if node.module else []))
            return first_docstring_line(source, name, package)
    return None


def table_cell(text):
    """Docstring text in a Markdown table cell: ````x```` as `x`, a bar escaped."""
    return re.sub(r"``(.+?)``", r"`\1`", text).replace("|", "\\|")


def render_top_level(package=PACKAGE):
    """The table of ``import minigcnc``'s names: name, the module it comes from, the first line of its docstring."""
    lines = ["## What `import minigcnc` gives\n", "| name | from | what it is |", "| --- | --- | --- |"]
    for name, module in top_level_names(package):
        what = first_docstring_line(module, name, package)
        lines.append(f"| `{name}` | `{module}` | {table_cell(what or NO_DOCSTRING)} |")
    return lines + [""]


# ---- the metrics a run records ------------------------------------------------------------------------------

def _split_outside_brackets(text, sep):
    """``text`` split at each ``sep`` that is outside () and []."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        depth += (ch in "([") - (ch in ")]")
        if ch == sep and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    return parts + [text[start:]]


def docstring_clauses(doc):
    """The clauses of a docstring: each bullet (or paragraph) on one line, split at its top-level ``;`` and at
    the end of each sentence."""
    clauses = []
    for paragraph in doc.split("\n\n"):
        for item in re.split(r"(?m)^\s*- ", paragraph):
            text = re.sub(r"\. (?=[A-Z])", ".; ", " ".join(item.split()))  # a sentence ends a clause too
            clauses += [c.strip().rstrip(".") for c in _split_outside_brackets(text, ";") if c.strip()]
    return clauses


def names_in(clause, keys):
    """The keys of ``keys`` a clause names: ````key```` (also ````key = ...````), every key of a range
    ````nc1```` .. ````nc4````, and ``<key>_ci95`` of the keys named when it speaks of their 95% intervals."""
    named = [k for k in keys if re.search(rf"``{re.escape(k)}( [^`]*)?``", clause)]
    for prefix, low, high in re.findall(r"``([a-z_]+)(\d+)`` \.\. ``\1(\d+)``", clause):
        named += [k for k in keys if (m := re.fullmatch(rf"{prefix}(\d+)(_.*)?", k)) and
                  int(low) <= int(m.group(1)) <= int(high)]
    if "95% interval" in clause or "``_ci95``" in clause:
        named += [f"{k}_ci95" for k in named if f"{k}_ci95" in keys]
    return named


def tiny_measurement():
    """(the keys one measurement records, in order; {extra's name: its keys}; measure's module): ``measure`` on an
    untrained MLP on rotated 8x8 digits with unseen target classes, few-shot episodes, the probe, every extra."""
    sys.path.insert(0, str(ROOT))
    from minigcnc.experiments import measure
    from minigcnc.experiments.config import scale_base
    from minigcnc.experiments.prepare import build_model, prepare_data

    config = scale_base("tiny", dataset="digits_rot", classes=tuple(range(12)), target_classes=tuple(range(20, 40)),
                        hidden=(16, 16), eval_per_class=10)  # 120 GC images, 16 features: no estimator level clipped
    data = prepare_data(config)
    model = build_model(config, data.n_classes, data.input_shape)
    params = model.init(0)
    base = list(measure.measure(model, params, data, fewshot_episodes=1, probe=True))
    extras = {name: [k for k in measure.measure(model, params, data, extras=(name,)) if k not in base]
              for name in measure.EXTRAS}
    constant = [node.slice.value for node in ast.walk(ast.parse(Path(measure.__file__).read_text(encoding="utf-8")))
                if isinstance(node, ast.Subscript) and ast.unparse(node.value) == "rec" and
                isinstance(node.slice, ast.Constant) and isinstance(node.slice.value, str)]  # e.g. "warnings"
    return base + [k for k in dict.fromkeys(constant) if k not in base], extras, measure


@lru_cache(maxsize=1)
def metric_rows():
    """[(keys, meaning)]: the recorded keys grouped by the docstring clause that names them, in record order;
    the keys no clause names come last, said so."""
    keys, extras, measure = tiny_measurement()
    rows, left = {}, list(keys)
    for clause in docstring_clauses(measure.__doc__.split("\n\n", 1)[1]):
        named = [k for k in left if k in names_in(clause, left)]
        if named:
            rows[clause] = named
            left = [k for k in left if k not in named]
    out = [(named, clause) for clause, named in sorted(rows.items(), key=lambda r: keys.index(r[1][0]))]
    if left:
        out.append((left, "(not yet named in the docstring of `minigcnc/experiments/measure.py`)"))
    for name, extra_keys in extras.items():
        fn_doc = getattr(measure, measure.EXTRAS[name].__name__).__doc__
        clauses = docstring_clauses(fn_doc)
        timed = [c for c in clauses if "``seconds_" in c]
        seconds = [k for k in extra_keys if k.startswith("seconds_")] if timed else []
        note = f" (with `extras=(\"{name}\",)`)"
        listed = {k for ks, _ in out for k in ks}
        again = [k for k in extra_keys if k in listed]  # keys an earlier extra records too: named once, both said
        for i, (ks, text) in enumerate(out):
            if again and set(again) & set(ks):
                out[i] = (ks, text + f"; also {clauses[0][0].lower() + clauses[0][1:]}{note}")
        out.append(([k for k in extra_keys if k not in seconds and k not in listed], clauses[0] + note))
        if seconds:
            out.append((seconds, timed[0] + note))
    return [(ks, text) for ks, text in out if ks]


def render_metrics():
    """The table of the metrics a run records (``metric_rows``)."""
    lines = ["## The metrics a run records\n",
             "Each evaluation of a run (`run.run`, every `eval_every` steps) records these keys "
             "(`experiments/measure.py`); the text is that module's docstring.\n",
             "| keys | what they are |", "| --- | --- |"]
    for keys, meaning in metric_rows():
        lines.append(f"| {', '.join(f'`{k}`' for k in keys)} | {table_cell(meaning)} |")
    return lines + [""]


def render(package=PACKAGE):
    """The text of docs/api.md."""
    lines = [HEADER] + render_top_level(package) + render_metrics() + ["## The modules, in reading order\n"]
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
