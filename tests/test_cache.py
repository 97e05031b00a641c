"""experiments/cache.py: runs are keyed by their config and by the code that computes them; a damaged file is
recomputed with a warning; every figure says what comes from the cache before it starts."""
import shutil
import warnings

import pytest

from minigcnc.experiments import cache, sweep
from minigcnc.experiments.config import RunConfig
from minigcnc.experiments.run import run

TINY = RunConfig(dataset="digits", model="mlp", hidden=(16, 8), lr=0.1, batch_size=32, steps=60, eval_every=20,
                 eval_per_class=5)


@pytest.fixture
def package_copy(tmp_path):
    """A copy of the package's source (and of the README beside it) to edit."""
    root = tmp_path / "minigcnc"
    shutil.copytree(cache.PACKAGE, root, ignore=shutil.ignore_patterns("__pycache__", "*.npz"))
    shutil.copy(cache.PACKAGE.parent / "README.md", tmp_path / "README.md")
    return root


def hash_of(root):
    cache.code_hash.cache_clear()  # (read once per process and root: the copy changes under the same path)
    return cache.code_hash(root)


def edit(path, old, new):
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, 1))


def test_the_hash_of_the_copy_is_the_hash_of_the_package(package_copy):
    assert hash_of(package_copy) == cache.code_hash() == cache.code_hash(cache.PACKAGE)
    assert "train.py" in cache.result_modules(package_copy) and "gc.py" in cache.result_modules(package_copy)
    assert not any(m.startswith("figure") for m in cache.result_modules(package_copy))
    assert {"experiments/run.py", "experiments/measure.py", "experiments/prepare.py"} <= set(cache.result_modules())
    assert not {"experiments/sweep.py", "experiments/grid.py", "experiments/cache.py", "experiments/dask_runner.py",
                "experiments/claims.py", "experiments/stats.py", "experiments/table.py", "experiments/plotting.py"} & \
        set(cache.result_modules())  # schedule, judge, print


def test_the_hashed_set_is_what_train_run_imports(package_copy):
    # a module train_run starts to import (here lazily, inside a function of one of its modules) joins the set
    assert "registry.py" not in cache.result_modules(package_copy)
    edit(package_copy / "collapse.py", "\ndef ", "\ndef _uses_registry():\n    from . import registry\n\n\ndef ")
    assert "registry.py" in cache.result_modules(package_copy)


def test_comments_and_docstrings_do_not_change_the_hash(package_copy):
    before = hash_of(package_copy)
    train = package_copy / "train.py"
    edit(train, '"""', '"""A student was here. ')  # the module docstring
    edit(train, "\ndef fit(", "\n# a comment of my own\ndef fit(")
    text = train.read_text()
    start = text.index('"""', text.index("\ndef fit("))  # the docstring of fit
    train.write_text(text[:start + 3] + "Reworded. " + text[start + 3:])
    (package_copy / "gc.py").write_text((package_copy / "gc.py").read_text() + "\n# the end\n")
    assert hash_of(package_copy) == before


def test_a_line_of_code_changes_the_hash(package_copy):
    before = hash_of(package_copy)
    (package_copy / "gc.py").write_text((package_copy / "gc.py").read_text() + "\nSTUDENT = 1\n")
    after_gc = hash_of(package_copy)
    assert after_gc != before
    edit(package_copy / "experiments" / "run.py", "steps=config.steps,", "steps=config.steps + 1,")
    assert hash_of(package_copy) not in (before, after_gc)  # the glue from a config to fit is part of it too


def test_figures_the_readme_and_the_scheduling_do_not_change_the_hash(package_copy):
    before = hash_of(package_copy)
    for name in ("figure1.py", "figure3.py", "experiments/cli.py", "experiments/progress.py",
                 "experiments/dask_runner.py", "experiments/grid.py"):
        (package_copy / name).write_text((package_copy / name).read_text() + "\nSTUDENT = 1\n")
    edit(package_copy / "experiments" / "sweep.py", "def run_many(", "def unused():\n    pass\n\n\ndef run_many(")
    (package_copy.parent / "README.md").write_text("# rewritten\n")
    assert hash_of(package_copy) == before


def test_a_run_of_other_code_is_not_reused(tmp_path, monkeypatch):
    import minigcnc.train

    real_fit, trained = minigcnc.train.fit, []
    monkeypatch.setattr(minigcnc.train, "fit", lambda *a, **k: (trained.append(1), real_fit(*a, **k))[1])
    monkeypatch.setattr(cache, "code_hash", lambda root=None: "code-a")
    first = run(TINY, tmp_path, progress=False)
    assert run(TINY, tmp_path, progress=False) == first and len(trained) == 1  # same code: reused
    monkeypatch.setattr(cache, "code_hash", lambda root=None: "code-b")
    assert cache.load_run(TINY, tmp_path) is None and sweep.todo([TINY], tmp_path) == [TINY]
    second = run(TINY, tmp_path, progress=False)
    assert len(trained) == 2 and second["key"] != first["key"] and second["versions"]["code_hash"] == "code-b"
    assert len(list((tmp_path / "runs").glob("*.json"))) == 2  # the old run stays, for the old code
    assert run(TINY, tmp_path, progress=False) == second and len(trained) == 2


@pytest.mark.parametrize("content,kinds", [
    (b"{}", ["ValueError: not a run history (no 'evals' list or 'status')"]),
    (b"\x00\xff\xfe garbage \x89PNG", ["UnicodeDecodeError: ", "JSONDecodeError: "]),  # (as the locale reads it)
    (b'{"status": "finished", "evals": [{"st', ["JSONDecodeError: Unterminated string"]),
], ids=["empty-object", "binary", "truncated"])
def test_an_unreadable_cache_file_is_named_and_recomputed(tmp_path, content, kinds):
    good = run(TINY, tmp_path, progress=False)
    path = cache.run_path(TINY, tmp_path)
    path.write_bytes(content)
    with pytest.warns(UserWarning, match="cannot be read") as caught:
        (again,) = sweep.run_many([TINY], tmp_path, progress=False)
    named = [str(w.message) for w in caught if "cannot be read" in str(w.message)]
    assert len(named) == 1, named  # named once, though the sweep looks at the file three times
    assert named[0].startswith(f"cached run {path} cannot be read (") and named[0].endswith("); it will be recomputed")
    assert any(named[0].startswith(f"cached run {path} cannot be read ({kind}") for kind in kinds), named[0]
    assert again["evals"] == good["evals"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the file is whole again
        assert cache.load_run(TINY, tmp_path)["evals"] == good["evals"]


def test_a_figure_says_what_comes_from_the_cache_before_it_starts(tmp_path, capsys):
    from minigcnc import figure3

    argv = ["--scale", "tiny", "--jobs", "1", "--quiet", "--seeds", "1"]
    n = len(figure3.configs("tiny", seeds=1))
    figure3.main(argv + ["--out", str(tmp_path / "a")])
    err = capsys.readouterr().err
    where = f"cache {cache.default_cache_dir()}"
    assert f"figure3: scale=tiny, {n} runs: 0 from the cache, {n} to train; " + where in err
    figure3.main(argv + ["--out", str(tmp_path / "b")])  # another --out: the same cache
    err = capsys.readouterr().err
    assert f"figure3: scale=tiny, {n} runs: {n} from the cache, 0 to train; " + where in err
    assert not (tmp_path / "a" / "cache").exists() and not (tmp_path / "b" / "cache").exists()


def test_the_cache_is_the_option_else_the_variable_else_the_home_folder_never_out(tmp_path, monkeypatch):
    from minigcnc.experiments import cli

    def cache_of(*argv):
        return cli.resolve_cache(cli.figure_parser("f", "").parse_args(["--out", str(tmp_path / "out"), *argv]))

    assert cache_of("--cache", str(tmp_path / "c")) == tmp_path / "c"
    monkeypatch.setenv("MINIGCNC_CACHE", str(tmp_path / "env"))
    assert cache_of() == tmp_path / "env"
    monkeypatch.delenv("MINIGCNC_CACHE")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_of() == tmp_path / "home" / ".cache" / "minigcnc"


def test_a_valid_run_file_under_another_runs_name_is_refused_and_recomputed(tmp_path):
    """Seed 1's file copied over seed 0's key: the stored key and config say it is another run."""
    seed0, seed1 = TINY, TINY.replace(seed=1)
    first = run(seed0, tmp_path, progress=False)
    run(seed1, tmp_path, progress=False)
    cache.run_path(seed0, tmp_path).write_bytes(cache.run_path(seed1, tmp_path).read_bytes())
    with pytest.warns(UserWarning, match="holds another run"):
        assert cache.load_run(seed0, tmp_path) is None
    again = run(seed0, tmp_path, progress=False)  # (named once per file, above)
    assert again["evals"] == first["evals"] and again["config"]["seed"] == 0
    assert cache.load_run(seed0, tmp_path)["config"]["seed"] == 0  # the file is seed 0's again


def test_prune_deletes_the_runs_of_other_code_and_info_counts_them(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(cache, "code_hash", lambda root=None: "code-a")
    run(TINY, tmp_path, progress=False)
    old = cache.run_path(TINY, tmp_path)
    old.with_suffix(".ckpt.npz").write_bytes(b"left beside a run of other code")
    monkeypatch.setattr(cache, "code_hash", lambda root=None: "code-b")
    new = run(TINY, tmp_path, progress=False)
    interrupted = tmp_path / "runs" / "0123456789abcdef.ckpt.npz"
    interrupted.write_bytes(b"a run in progress")
    damaged = tmp_path / "runs" / "fedcba9876543210.json"
    damaged.write_text("{")
    other = [damaged, old, old.with_suffix(".ckpt.npz")]
    freed = sum(p.stat().st_size for p in other)

    cache.main(["--info", "--cache", str(tmp_path)])
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith(f"cache {tmp_path}: 3 runs, ")
    assert lines[1].startswith("  1 of this code (code-b): ")
    assert lines[2] == (f"  2 of other code: {cache._human(freed)} "
                        "(python -m minigcnc.experiments.cache --prune deletes them)")
    assert lines[3].startswith("  1 checkpoint of interrupted runs: 17 B (kept")

    cache.main(["--prune", "--dry-run", "--cache", str(tmp_path)])
    out = capsys.readouterr().out.splitlines()
    assert sorted(out[:3]) == sorted([f"would delete {damaged} (code unreadable, 1 B)",
                              f"would delete {old} (code code-a, {cache._human(old.stat().st_size)})",
                              f"would delete {old.with_suffix('.ckpt.npz')} (a checkpoint, 31 B)"])
    assert out[3] == (f"would delete 2 runs of other code and 1 checkpoint from {tmp_path}, which would free "
                      f"{cache._human(freed)}; nothing deleted (--dry-run)")
    assert all(p.exists() for p in other)

    monkeypatch.setenv("MINIGCNC_CACHE", str(tmp_path))  # (no --cache: the same folder as the figures')
    cache.main(["--prune"])
    assert capsys.readouterr().out == (f"deleted 2 runs of other code and 1 checkpoint from {tmp_path}, freeing "
                                       f"{cache._human(freed)}\n")
    assert not any(p.exists() for p in other) and interrupted.exists()
    assert cache.load_run(TINY, tmp_path) == new  # the run of this code stays
    cache.main(["--prune"])
    assert capsys.readouterr().out == f"deleted 0 runs of other code from {tmp_path}, freeing 0 B\n"
    with pytest.raises(SystemExit):
        cache.main(["--info", "--dry-run"])


def test_the_cache_commands_run_as_a_module(tmp_path):
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "minigcnc.experiments.cache", "--info", "--cache", str(tmp_path)],
                          capture_output=True, text=True, check=True)
    assert done.stdout.startswith(f"cache {tmp_path}: 0 runs, 0 B") and not done.stderr


# ---- a run file is checked against its digest: an edit that leaves valid JSON is never reused ----------------

def _edit_value(h):
    h["evals"][-1]["ncc_test_error"] = 0.58


def _nan(h):
    h["evals"][-1]["gc"] = float("nan")


def _flip_status(h):
    h["status"] = "diverged" if h["status"] == "finished" else "finished"


def _empty_evals(h):
    h["evals"] = []


@pytest.mark.parametrize("edit", [_edit_value, _nan, _flip_status, _empty_evals],
                         ids=["edited value", "NaN", "flipped status", "emptied evals"])
def test_a_run_file_edited_by_hand_is_named_and_recomputed_never_reused(tmp_path, edit):
    import json

    good = run(TINY, tmp_path, progress=False)
    path = cache.run_path(TINY, tmp_path)
    h = json.loads(path.read_text())
    edit(h)
    path.write_text(json.dumps(h, indent=1, allow_nan=True))  # still valid JSON, same key, same config
    with pytest.warns(UserWarning) as caught:
        (again,) = sweep.run_many([TINY], tmp_path, progress=False)
    (named,) = [str(w.message) for w in caught if "cannot be read" in str(w.message)]
    assert named == (f"cached run {path} cannot be read (ValueError: its content does not match its digest "
                     "(edited by hand or damaged)); it will be recomputed")
    assert again["evals"] == good["evals"] and again["status"] == "finished"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert cache.load_run(TINY, tmp_path) == again  # recomputed and whole again


def test_a_run_file_without_a_digest_is_recomputed(tmp_path):
    import json

    run(TINY, tmp_path, progress=False)
    path = cache.run_path(TINY, tmp_path)
    h = json.loads(path.read_text())
    del h["digest"]
    path.write_text(json.dumps(h))
    with pytest.warns(UserWarning, match="it has no digest"):
        assert cache.load_run(TINY, tmp_path) is None


def test_a_checkpoint_of_another_seed_in_the_cache_is_discarded_and_the_run_trains_from_step_0(tmp_path):
    """Seed 1's checkpoint copied under seed 0's name: the run warns, trains from scratch, and equals a clean run."""
    from minigcnc.experiments.run import train_in_worker

    seed1 = TINY.replace(seed=1)
    train_in_worker(seed1.to_dict(), str(tmp_path / "other"), False, keep_checkpoint=True)
    theirs = tmp_path / "other" / f"{cache.run_key(seed1)}.ckpt.npz"
    mine = cache.run_path(TINY, tmp_path).with_suffix(".ckpt.npz")
    mine.parent.mkdir(parents=True)
    mine.write_bytes(theirs.read_bytes())
    with pytest.warns(UserWarning, match=r"is of another run: seed 1 \(this run: 0\), key .*; discarded, the run "
                                         r"starts from step 0"):
        h = run(TINY, tmp_path, progress=False)
    assert h["config"]["seed"] == 0 and h["evals"] == run(TINY, tmp_path / "clean", progress=False)["evals"]
    assert not mine.exists()


def test_info_lists_and_prune_deletes_the_temporary_files_of_killed_writers(tmp_path, capsys):
    import os
    import subprocess
    import sys
    import time

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    pid = int(dead.stdout)  # a process that is gone
    runs = tmp_path / "runs"
    runs.mkdir()
    stale = [runs / f".0123456789abcdef.json.tmp-{pid}", runs / f".0123456789abcdef.ckpt.npz.tmp-{pid}"]
    live = runs / f".fedcba9876543210.json.tmp-{os.getpid()}"  # this process's: being written
    young = runs / f".0011223344556677.json.tmp-{pid}"  # a second old: left alone (it may be another machine's)
    for p in stale + [live, young]:
        p.write_text("half")
    old = time.time() - 3600
    for p in stale + [live]:
        os.utime(p, (old, old))
    assert cache.stale_temps(runs) == sorted(stale)
    cache.main(["--info", "--cache", str(tmp_path)])
    assert "  2 temporary files of killed writers: 8 B (--prune deletes them)" in capsys.readouterr().out
    cache.main(["--prune", "--cache", str(tmp_path)])
    assert "and 2 temporary files of killed writers" in capsys.readouterr().out
    assert not any(p.exists() for p in stale) and live.exists() and young.exists()
