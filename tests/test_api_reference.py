"""docs/api.md is what ``scripts/make_api_reference.py`` writes from the current source, and it is complete.

The generator reads the package with ``ast`` (no import), so these tests are fast and need no optional
dependency.
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
