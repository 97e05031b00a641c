"""python -m minigcnc.reproduce: the figures in one command, one REPORT.md, resumable through the cache."""
import re

import pytest

from minigcnc import reproduce
from minigcnc.registry import FIGURES


def test_reproduce_writes_a_report_with_each_figures_claim_table_and_wall_time(tmp_path, capsys):
    out = tmp_path / "figs"
    res = reproduce.main(["--scale", "tiny", "--out", str(out), "--jobs", "1", "--only", "figure3", "figure2",
                          "--seeds", "1"])
    report = (out / "REPORT.md").read_text()
    assert res["report"] == str(out / "REPORT.md")
    assert [e["name"] for e in res["figures"]] == ["figure3", "figure2"]
    assert not any("error" in e for e in res["figures"])
    for name in ("figure3", "figure2"):
        section = report.split(f"## {name}\n")[1].split("\n## ")[0]
        assert re.search(r"Wall time: \S+ \(\d+\.\d s\)", section)
        if name == "figure3":
            assert "claim  " in section and "statistic" in section and "verdict" in section  # the claim table
        else:  # one seed: every statement a description, and no empty table header
            assert "No counted claims" in section and "claim  " not in section and "description  " in section
        assert re.search(r"\d+ claims?: \d+ holds", section)
        assert f"python -m minigcnc.{name} --scale tiny --out {out} --jobs 1" in section
        assert (out / f"{name}_tiny.png").exists()
    figure3 = report.split("## figure3\n")[1].split("\n## ")[0]
    assert "Final values, mean over runs:" in figure3 and "vacuous" in figure3.lower()  # generated, not typed
    assert "PLUMBING CHECK: tiny scale trains short runs on digits and gaussians to test the code" in figure3
    figure2 = report.split("## figure2\n")[1].split("\n## ")[0]
    assert "PLUMBING CHECK: tiny scale trains short runs on digits to test the code" in figure2
    costs = figure2.split("Cost of each estimator")[1]  # Figure 2's cost table, from the runs' recorded seconds
    assert "seconds per call" in costs and "x the exact GC" in costs and "gc_hutchinson_1" in costs
    assert re.search(r"Total wall time: \*\*\S+\*\* \(\d+\.\d s\), finished", report)
    assert "## Versions" in report and "- numpy: " in report and "- code_hash: " in report
    assert not list(out.glob(".REPORT.md.tmp-*"))  # written atomically


def test_a_second_run_reuses_the_cached_runs(tmp_path, capsys):
    argv = ["--scale", "tiny", "--out", str(tmp_path), "--jobs", "1", "--only", "figure3", "--seeds", "1", "--quiet"]
    reproduce.main(argv)
    capsys.readouterr()
    reproduce.main(argv)
    assert re.search(r"(\d+) runs: \1 from the cache, 0 to train", capsys.readouterr().err)


def test_a_failing_figure_is_reported_and_the_others_still_run(tmp_path, monkeypatch, capsys):
    import minigcnc.figure2 as figure2

    def broken(argv):
        raise SystemExit("figure2: a dataset file is missing")

    monkeypatch.setattr(figure2, "main", broken)
    res = reproduce.main(["--scale", "tiny", "--out", str(tmp_path), "--jobs", "1", "--only", "figure2", "figure3",
                          "--quiet", "--seeds", "1"])
    assert res["figures"][0]["error"] == "figure2: a dataset file is missing"
    assert "error" not in res["figures"][1]
    report = (tmp_path / "REPORT.md").read_text()
    assert "| figure2 |" in report and "error: figure2: a dataset file is missing" in report


def test_an_interrupted_figure_stops_reproduce_instead_of_going_on_to_the_next(tmp_path, monkeypatch):
    """Ctrl-C, SIGTERM or SIGHUP in a figure's sweep (``cli.Interrupted``) ends the whole command."""
    import minigcnc.figure2 as figure2
    import minigcnc.figure3 as figure3
    from minigcnc.experiments.cli import Interrupted

    def stopped(argv):
        raise Interrupted("figure2: stopped; 3 of 5 runs kept")

    ran = []
    monkeypatch.setattr(figure2, "main", stopped)
    monkeypatch.setattr(figure3, "main", lambda argv: ran.append(argv))
    with pytest.raises(SystemExit, match="figure2: stopped; 3 of 5 runs kept"):
        reproduce.main(["--scale", "tiny", "--out", str(tmp_path), "--jobs", "1", "--only", "figure2", "figure3",
                        "--quiet"])
    assert ran == []


def test_reproduce_lists_every_figure_and_refuses_unknown_names(capsys):
    assert [f for f in FIGURES if f not in ("figure_flatness", "figure_nc_levels", "figure_layers")] == [
        "figure3", "figure2", "figure1", "figure_gc_regularization", "figure4", "figure4_digits", "figure4_swapped",
        "figure_mnist"]
    names = list(FIGURES)  # issue 29's figures: each after the runs it reads (Figure 1's, Figure 4's), layers last
    assert names.index("figure_flatness") > names.index("figure1") and names[-1] == "figure_layers"
    assert names.index("figure_nc_levels") > names.index("figure4")
    assert FIGURES["figure4_swapped"][:2] == ("figure4", ["--split", "swapped"])
    assert FIGURES["figure4_digits"][:2] == ("figure4", ["--split", "digits"])
    assert reproduce.parser().parse_args(["--only", "figure4_digits"]).only == ["figure4_digits"]
    with pytest.raises(SystemExit):
        reproduce.main(["--only", "figure9"])
    with pytest.raises(SystemExit):
        reproduce.main(["--jobs", "0"])


def test_reproduce_uses_the_figures_cache_unless_told_another(tmp_path, monkeypatch):
    """No --cache: each figure's own default ($MINIGCNC_CACHE, else ~/.cache/minigcnc), never a folder inside --out
    (which would put a cache into the repository's figures/); --cache DIR: handed to every figure."""
    args = reproduce.parser().parse_args(["--out", str(tmp_path)])
    assert "--cache" not in reproduce.figure_argv(args, [])
    assert reproduce.figure_argv(args, ["--split", "digits"])[-2:] == ["--split", "digits"]
    args = reproduce.parser().parse_args(["--out", str(tmp_path), "--cache", str(tmp_path / "mine")])
    argv = reproduce.figure_argv(args, [])
    assert argv[argv.index("--cache") + 1] == str(tmp_path / "mine")


# ---- nothing a smoke run can overwrite (issue 31 item 1); one line for --out FILE (issue 33 item 6) -----------

def test_a_smoke_run_writes_to_results_and_the_figures_own_cache_never_into_figures(tmp_path, monkeypatch):
    seen = []
    monkeypatch.setattr(reproduce, "run_figure", lambda name, args: seen.append(reproduce.figure_argv(args, [])) or
                        {"name": name, "what": "x", "command": "c", "seconds": 0.0})
    monkeypatch.chdir(tmp_path)
    res = reproduce.main(["--scale", "tiny", "--only", "figure3", "--quiet"])
    assert res["report"] == "results/REPORT.md" and (tmp_path / "results" / "REPORT.md").exists()
    assert seen[0][:4] == ["--scale", "tiny", "--out", "results"] and "--cache" not in seen[0]  # the figures' default
    assert not (tmp_path / "figures").exists()
    reproduce.main(["--only", "figure3", "--quiet", "--cache", str(tmp_path / "c")])  # laptop scale: figures/
    assert (tmp_path / "figures" / "REPORT.md").exists() and seen[1][seen[1].index("--cache") + 1] == str(tmp_path / "c")


def test_a_smoke_run_into_the_committed_figures_is_refused(capsys):
    from pathlib import Path

    figures = Path(reproduce.__file__).resolve().parents[1] / "figures"
    with pytest.raises(SystemExit) as stop:
        reproduce.main(["--scale", "tiny", "--out", str(figures)])
    assert stop.value.code == 2
    assert "the committed figures/ hold the laptop-scale figures" in capsys.readouterr().err


def test_an_out_that_is_a_file_ends_with_one_line(tmp_path, capsys):
    (tmp_path / "f").write_text("")
    with pytest.raises(SystemExit) as stop:
        reproduce.main(["--scale", "tiny", "--out", str(tmp_path / "f")])
    assert stop.value.code == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"python -m minigcnc.reproduce: error: --out {tmp_path / 'f'}: cannot write there (it is a file, not a "
        "folder); give a folder you can write to")


@pytest.mark.slow  # (a minute or two: tiny figures in a fresh clone)
def test_the_suggested_tiny_commands_leave_a_clean_clone_clean(tmp_path):
    """In a clean clone, with no $MINIGCNC_CACHE and a fresh HOME: the smoke run reproduce's --help offers, a
    figure at tiny scale, the cache commands and the menu leave `git status` empty."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(reproduce.__file__).resolve().parents[1]
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(root), str(clone)], check=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MINIGCNC_")}
    env.update(HOME=str(tmp_path / "home"), PYTHONPATH=str(clone))
    for command in (["-m", "minigcnc"], ["-m", "minigcnc.figure3", "--scale", "tiny", "--seeds", "1", "--quiet"],
                    ["-m", "minigcnc.reproduce", "--scale", "tiny", "--only", "figure2", "--seeds", "1", "--quiet"],
                    ["-m", "minigcnc.experiments.cache", "--info"], ["-m", "minigcnc.experiments.cache", "--prune"]):
        done = subprocess.run([sys.executable, *command], cwd=clone, env=env, capture_output=True, text=True,
                              timeout=600)
        assert done.returncode == 0, (command, done.stderr[-2000:])
        status = subprocess.run(["git", "status", "--porcelain", "--ignored=no"], cwd=clone, capture_output=True,
                                text=True, check=True).stdout
        assert status == "", (command, status)
    assert (clone / "results" / "REPORT.md").exists() and not (clone / "figures" / "cache").exists()
    assert list((tmp_path / "home" / ".cache" / "minigcnc" / "runs").glob("*.json"))  # the cache: outside the clone
