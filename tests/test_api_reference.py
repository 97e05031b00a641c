"""docs/api.md is what ``scripts/make_api_reference.py`` writes from the current source, and it is complete: the
names of ``import minigcnc``, every metric a run records, every public module in reading order.

The generator reads the modules with ``ast`` (no import), so these tests are fast and need no optional
dependency; only the metric table measures one tiny untrained run.
"""
import importlib.util
from pathlib import Path


ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "make_api_reference.py"
COMMITTED = ROOT / "docs" / "api.md"


def load_script():
    spec = importlib.util.spec_from_file_location("make_api_reference", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


api = load_script()
MISSING = api.missing_docstrings()


def test_docs_api_md_is_up_to_date(tmp_path):
    out = tmp_path / "api.md"
    api.main(["--out", str(out)])
    assert COMMITTED.exists(), "docs/api.md is missing: run python scripts/make_api_reference.py"
    assert out.read_text(encoding="utf-8") == COMMITTED.read_text(encoding="utf-8"), \
        "docs/api.md is out of date: run python scripts/make_api_reference.py"


def test_the_reference_is_deterministic():
    assert api.render() == api.render()


def test_the_reference_lists_every_public_module_and_the_core_names():
    text = api.render()
    modules = dict(api.public_modules())
    assert "minigcnc.gc" in modules and "minigcnc.data" in modules
    assert not any(name.endswith("__main__") or "._" in name for name in modules)
    for line in ("- `geometric_complexity(model, params, X, *,", "- `cdnv(Z, y)` — ", "- `fit(model, params, X, y, *,"):
        assert line in text, line
    for module, (_, entries) in api.reference().items():
        if module.split(".")[-1].startswith("figure"):
            assert [name for name, _, _ in entries] in ([], ["main"]), module  # only main of a figure module
        assert all(not name.startswith("_") for name, _, _ in entries), module


def test_every_public_name_has_a_docstring():
    assert not MISSING, f"public names without a docstring: {', '.join(MISSING)}"


def test_the_modules_come_in_reading_order_and_the_benchmarks_last():
    names = [name for name, _ in api.public_modules()]
    chain = ["backend", "ops", "layers", "models", "train", "jacobians", "gc", "classes", "collapse", "bounds",
             "fewshot", "checks", "data", "data.files", "experiments", "experiments.config", "experiments.prepare",
             "experiments.measure", "experiments.cache", "experiments.run", "experiments.sweep", "experiments.claims",
             "figure1", "figure_mnist", "reproduce", "bench"]
    positions = [names.index(f"minigcnc.{m}") for m in chain]
    assert positions == sorted(positions), [chain[i] for i in range(len(chain) - 1) if positions[i] > positions[i + 1]]
    assert names[0] == "minigcnc" and all(n.startswith("minigcnc.bench") for n in names[names.index("minigcnc.bench"):])
    # a module the list does not name goes after the others of its package
    rank = lambda name: api.reading_rank(name)[0]  # noqa: E731
    assert rank("minigcnc.experiments.driver") < rank("minigcnc.experiments.new") < rank("minigcnc.registry")
    assert rank("minigcnc.reproduce") <= rank("minigcnc.new") < rank("minigcnc.bench") < rank("minigcnc.bench.new")
    assert rank("minigcnc.data.files") == rank("minigcnc.data.new") < rank("minigcnc.experiments")


def test_the_top_table_gives_every_name_of_import_minigcnc_with_its_docstring():
    import minigcnc

    lines = api.render_top_level()
    for name in [n for names in minigcnc.LAZY.values() for n in names] + list(minigcnc.SUBMODULES) + ["fit", "load"]:
        assert any(line.startswith(f"| `{name}` | ") for line in lines), name
    assert not [line for line in lines if api.NO_DOCSTRING in line]


def test_the_metric_table_names_every_key_a_run_records_once():
    from minigcnc.experiments import measure
    from minigcnc.experiments.config import scale_base
    from minigcnc.experiments.prepare import build_model, prepare_data

    config = scale_base("tiny", target_classes=(5, 6, 7, 8, 9), classes=(0, 1, 2, 3, 4), eval_per_class=3)
    data = prepare_data(config)
    model = build_model(config, data.n_classes, data.input_shape)
    recorded = set(measure.measure(model, model.init(1), data, fewshot_episodes=1, probe=True))
    recorded |= {measure.estimator_key(method, level) for method, (_, levels) in measure.GC_ESTIMATOR_LEVELS.items()
                 for level in levels} | {"warnings", "seconds_gc"}
    listed = [key for keys, _ in api.metric_rows() for key in keys]
    assert len(listed) == len(set(listed)), "a key is listed twice"
    assert recorded <= set(listed), f"recorded but not in docs/api.md: {sorted(recorded - set(listed))}"
    text = "\n".join(api.render_metrics())
    assert "| `bound_gc`" in text or "`bound_gc`," in text
    assert "(1/k) sum_c P(error \\| c)" in text  # a bar inside a cell is escaped
