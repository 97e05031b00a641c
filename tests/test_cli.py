"""experiments/cli.py: a figure command's mistakes end with one message, before anything trains; Ctrl-C ends
with one line."""
import os
import re
import signal
import subprocess
import sys
import textwrap
import time

import pytest


def test_a_figure_command_ends_with_the_message_when_a_dataset_file_is_missing(tmp_path):
    from minigcnc import figure_mnist

    with pytest.raises(SystemExit) as stop:
        figure_mnist.main(["--scale", "paper", "--backend", "numpy", "--data-root", str(tmp_path / "empty"),
                           "--out", str(tmp_path), "--jobs", "1", "--quiet"])
    message = str(stop.value)
    assert "figure_mnist: a dataset file is missing" in message and "--data-root" in message
    assert "train-images-idx3-ubyte" in message and str(tmp_path / "empty") in message


def test_write_figure_only_writes_it_neither_judges_the_claims_nor_prints_them(tmp_path, capsys):
    import json
    import time

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from minigcnc.experiments import claims, cli

    c = claims.rank_correlation_claim("mine", "s", [[1, 2, 3, 4, 5]] * 3, [[1, 2, 3, 4, 5]] * 3, +1, "x", "y")
    cli.write_figure("mine", "tiny", tmp_path, plt.figure(), {"figure": "mine"}, [c], time.time())
    assert capsys.readouterr().out == "" and c.q_value is None
    doc = json.loads((tmp_path / "mine_tiny.json").read_text())
    assert doc["claims"] == [c.to_dict()] and doc["figure"] == "mine"


def test_a_figure_command_ends_with_the_message_when_cupy_is_missing(tmp_path):
    try:
        import cupy  # noqa: F401
        pytest.skip("CuPy is installed here")
    except ImportError:
        pass
    from minigcnc import figure3

    with pytest.raises(SystemExit, match=r"figure3: backend='cupy' needs CuPy.*\.\[gpu\]"):
        figure3.main(["--scale", "tiny", "--backend", "cupy", "--out", str(tmp_path), "--jobs", "1", "--quiet"])


# ---- bad input ends the command before anything trains ----------------------------------------------------

@pytest.fixture
def nothing_trains(monkeypatch):
    """Any attempt to train fails the test."""
    import minigcnc.train
    from minigcnc.experiments import sweep

    monkeypatch.setattr(minigcnc.train, "fit", lambda *a, **k: pytest.fail("a run was trained"))
    monkeypatch.setattr(sweep, "run_many", lambda *a, **k: pytest.fail("the sweep started"))


def test_jobs_zero_is_refused_with_one_line(tmp_path, capsys, nothing_trains):
    from minigcnc import figure3

    with pytest.raises(SystemExit) as stop:
        figure3.main(["--scale", "tiny", "--jobs", "0", "--out", str(tmp_path)])
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert err.strip().splitlines()[-1] == ("python -m minigcnc.figure3: error: --jobs must be at least 1 "
                                            "(the number of runs trained at once); got 0")


def test_an_unknown_model_is_named_with_the_accepted_ones(tmp_path, nothing_trains):
    from minigcnc import figure1

    with pytest.raises(SystemExit) as stop:
        figure1.main(["--scale", "tiny", "--model", "transformer", "--out", str(tmp_path), "--jobs", "1", "--quiet"])
    assert str(stop.value) == ("figure1: model: got 'transformer'; accepted: mlp, convnet, vgg11, vgg13, resnet18; "
                               "fix: give another --model")


def test_an_unknown_dataset_ends_with_one_line_before_any_work(tmp_path, capsys, nothing_trains):
    from minigcnc import figure1
    from minigcnc.data import DATASETS

    with pytest.raises(SystemExit) as stop:
        figure1.main(["--scale", "tiny", "--dataset", "imagenet", "--out", str(tmp_path), "--jobs", "2", "--quiet"])
    accepted = ", ".join(repr(d) for d in DATASETS)
    assert str(stop.value) == (f"figure1: dataset must be one of {accepted}; got 'imagenet'; "
                               "fix: give another --dataset")
    assert "cache" not in capsys.readouterr().err  # (not even the line that counts the runs)


def test_an_out_folder_that_cannot_be_written_is_refused(tmp_path, capsys, nothing_trains):
    from minigcnc import figure3

    (tmp_path / "somefile").write_text("not a folder")  # (tests may run as root, where chmod stops nothing)
    with pytest.raises(SystemExit) as stop:
        figure3.main(["--scale", "tiny", "--out", str(tmp_path / "somefile" / "sub"), "--jobs", "1"])
    assert stop.value.code == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last == (f"python -m minigcnc.figure3: error: --out {tmp_path / 'somefile' / 'sub'}: cannot write there "
                    "(Not a directory); give a folder you can write to")


def test_a_dask_address_of_the_wrong_form_is_refused(tmp_path, capsys, nothing_trains):
    from minigcnc import figure3

    with pytest.raises(SystemExit) as stop:
        figure3.main(["--scale", "tiny", "--out", str(tmp_path), "--dask", "foo"])
    assert stop.value.code == 2
    assert "error: --dask: got 'foo'; give 'local' or 'local:N'" in capsys.readouterr().err


def test_an_unknown_activation_is_refused_before_any_run(tmp_path, monkeypatch):
    import minigcnc.train
    from minigcnc.experiments import cli, sweep
    from minigcnc.experiments.config import check_config, scale_base

    monkeypatch.setattr(minigcnc.train, "fit", lambda *a, **k: pytest.fail("a run was trained"))
    good, bad = scale_base("tiny"), scale_base("tiny", activation="swish")
    message = "activation: got 'swish'; accepted: relu, tanh, identity"
    with pytest.raises(ValueError, match=f"^{message}$"):
        check_config(bad)
    fix = "; fix: set activation to an accepted value in run 2 of 2 (seed 0) of the sweep"
    with pytest.raises(ValueError, match=f"^{message}{re.escape(fix)}$"):  # your own sweep: checked before any run
        sweep.run_many([good, bad], tmp_path, progress=False)
    args = cli.parse(cli.figure_parser("mine", ""), ["--scale", "tiny", "--out", str(tmp_path), "--jobs", "1"])
    with pytest.raises(SystemExit, match=f"^mine: {message}{re.escape(fix)}$"):
        cli.run_sweep("mine", args, [good, bad])
    with pytest.raises(ValueError, match="activation: vgg11 is built with ReLU only"):
        check_config(good.replace(model="vgg11", activation="tanh"))


# ---- Ctrl-C ------------------------------------------------------------------------------------------------

def test_ctrl_c_ends_with_one_line_saying_what_was_kept(tmp_path, monkeypatch, capsys):
    from minigcnc import figure3
    from minigcnc.experiments import sweep

    real = sweep.run_many

    def one_then_ctrl_c(configs, cache_dir, **kw):
        real(configs[:1], cache_dir, **kw)
        raise KeyboardInterrupt

    monkeypatch.setattr(sweep, "run_many", one_then_ctrl_c)
    with pytest.raises(SystemExit) as stop:
        figure3.main(["--scale", "tiny", "--out", str(tmp_path), "--jobs", "1", "--quiet"])
    from minigcnc.experiments.cache import default_cache_dir

    assert re.fullmatch(rf"\nfigure3: interrupted\. 1 of \d+ runs finished and are kept in "
                        rf"{re.escape(str(default_cache_dir()))}; the same command resumes from there\.", str(stop.value))


SIGINT_SCRIPT = textwrap.dedent("""
    import sys
    from minigcnc.experiments import cli
    from minigcnc.experiments.config import scale_base
    args = cli.parse(cli.figure_parser("demo", ""), ["--scale", "tiny", "--jobs", "2", "--out", sys.argv[1],
                                                     "--cache", sys.argv[2]])
    configs = [scale_base("tiny", steps=5000, eval_every=20, seed=s) for s in range(3)]
    cli.run_sweep("demo", args, configs)
""")


def test_ctrl_c_on_a_parallel_sweep_ends_cleanly(tmp_path):
    """SIGINT to the command and its workers (as Ctrl-C in a terminal): one line, no traceback, no leaked
    semaphores, no worker left, the checkpoints of the runs in progress kept."""
    script = tmp_path / "demo.py"
    script.write_text(SIGINT_SCRIPT)
    cache = tmp_path / "cache"
    proc = subprocess.Popen([sys.executable, str(script), str(tmp_path / "out"), str(cache)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.time() + 120
    while time.time() < deadline and len(list(cache.glob("runs/*.ckpt.npz"))) < 2 and proc.poll() is None:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 1, err
    assert "Traceback" not in err and "leaked" not in err and "KeyboardInterrupt" not in err, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines[0].startswith("demo: scale=tiny, 3 runs: 0 from the cache, 3 to train")
    assert lines[1:] == [f"demo: interrupted. 0 of 3 runs finished and are kept in {cache}, 2 more kept their last "
                         "checkpoint; the same command resumes from there."], err
    assert len(list(cache.glob("runs/*.ckpt.npz"))) >= 2
    deadline = time.time() + 20  # no worker process is left (the resource trackers take a moment to go)
    while time.time() < deadline:
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    else:
        pytest.fail("processes of the interrupted sweep are still running")


def descendants(pid):
    """{(pid, start time)} of every living child and grandchild of ``pid`` (psutil, else Linux's /proc)."""
    try:
        import psutil

        return {(p.pid, p.create_time()) for p in psutil.Process(pid).children(recursive=True)}
    except ImportError:
        pass
    if not os.path.isdir("/proc"):
        pytest.skip("needs psutil or /proc to find child processes")
    stats = {}
    for entry in os.listdir("/proc"):
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()  # (after the command name, which may hold spaces)
            stats[int(entry)] = (int(fields[1]), fields[19])  # parent pid, start time
        except (ValueError, OSError, IndexError):
            continue
    found, todo = set(), [pid]
    while todo:
        parent = todo.pop()
        for child, (ppid, start) in stats.items():
            if ppid == parent:
                found.add((child, start))
                todo.append(child)
    return found


def alive(pid, start):
    """Whether process ``pid`` started at ``start`` still runs (a zombie does not)."""
    try:
        import psutil

        try:
            p = psutil.Process(pid)
            return p.create_time() == start and p.status() != psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return False
    except ImportError:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            return False
        return fields[19] == start and fields[0] != "Z"


def test_kill_pid_ends_a_parallel_sweep_and_its_workers_like_ctrl_c(tmp_path):
    """SIGTERM to the main process only (``kill PID``), not its group: the workers stop too, and the command ends
    with the same one line as Ctrl-C."""
    script = tmp_path / "demo.py"
    script.write_text(SIGINT_SCRIPT)
    cache = tmp_path / "cache"
    err_file = tmp_path / "stderr.txt"
    with open(err_file, "w") as err:  # (a pipe would stay open while a worker lives: read a file instead)
        proc = subprocess.Popen([sys.executable, str(script), str(tmp_path / "out"), str(cache)],
                                stdout=subprocess.DEVNULL, stderr=err, start_new_session=True)
    try:
        deadline = time.time() + 60
        while time.time() < deadline and len(list(cache.glob("runs/*.ckpt.npz"))) < 2 and proc.poll() is None:
            time.sleep(0.05)  # both workers are training
        workers = descendants(proc.pid)
        assert len(workers) >= 2 and proc.poll() is None, err_file.read_text()
        os.kill(proc.pid, signal.SIGTERM)
        assert proc.wait(timeout=20) == 1, err_file.read_text()
        deadline = time.time() + 10  # (the resource trackers take a moment to see that the others are gone)
        while time.time() < deadline and any(alive(*w) for w in workers):
            time.sleep(0.1)
        assert not [w for w in workers if alive(*w)], "worker processes outlived the command"
        lines = [line for line in err_file.read_text().splitlines() if line.strip()]
        assert "Traceback" not in err_file.read_text() and lines[-1] == (
            f"demo: interrupted. 0 of 3 runs finished and are kept in {cache}, 2 more kept their last checkpoint; "
            "the same command resumes from there."), lines
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()


def test_sigterm_and_sighup_interrupt_a_sweep_only_while_it_runs():
    from minigcnc.experiments.sweep import stop_signals_interrupt

    if not hasattr(signal, "SIGHUP"):
        pytest.skip("no SIGHUP on this platform")
    mine = lambda signum, frame: None  # noqa: E731
    old_term, old_hup = signal.signal(signal.SIGTERM, mine), signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        with pytest.raises(KeyboardInterrupt, match="SIGTERM"), stop_signals_interrupt():
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(1)  # (the handler runs at the next bytecode: never reached)
        with stop_signals_interrupt():  # an ignored signal (nohup's SIGHUP) stays ignored
            assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
        signal.signal(signal.SIGHUP, signal.SIG_DFL)
        with pytest.raises(KeyboardInterrupt, match="SIGHUP"), stop_signals_interrupt():
            os.kill(os.getpid(), signal.SIGHUP)
            time.sleep(1)
        assert signal.getsignal(signal.SIGTERM) is mine and signal.getsignal(signal.SIGHUP) is signal.SIG_DFL
    finally:
        signal.signal(signal.SIGTERM, old_term)
        signal.signal(signal.SIGHUP, old_hup)


def test_an_unwritable_cache_is_named_before_any_work(tmp_path, monkeypatch, capsys):
    from minigcnc import figure3

    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(SystemExit):
        figure3.main(["--scale", "tiny", "--out", str(tmp_path / "o"), "--cache", str(blocker / "sub")])
    err = capsys.readouterr().err
    assert f"--cache {blocker / 'sub'}: cannot write there" in err and "Traceback" not in err
    monkeypatch.setenv("MINIGCNC_CACHE", str(blocker / "sub"))
    with pytest.raises(SystemExit):
        figure3.main(["--scale", "tiny", "--out", str(tmp_path / "o")])
    assert "$MINIGCNC_CACHE" in capsys.readouterr().err


# ---- python -m minigcnc --------------------------------------------------------------------------------------

def test_python_m_minigcnc_lists_every_shared_option_the_cache_commands_and_where_to_read_on(capsys):
    from pathlib import Path

    from minigcnc import __main__ as menu
    from minigcnc.experiments import cli

    menu.main()
    out = capsys.readouterr().out
    options = [a.option_strings[-1] for a in cli.figure_parser("f", "")._actions if a.dest != "help"]
    assert {"--seeds", "--cache", "--dask", "--data-root"} <= set(options)
    for option in options:
        assert f"\n  {option} " in out, option
    assert "python -m minigcnc.experiments.cache --info" in out and "--prune [--dry-run]" in out
    from minigcnc.registry import FIGURES

    for module, extra, what in FIGURES.values():  # every figure reproduce runs, with its extra arguments
        assert f"\n  python -m minigcnc.{' '.join([module, *extra])} " in out and what in out
    root = Path(menu.__file__).resolve().parents[1]
    for path in ("notebooks/tutorial.ipynb", "docs/theory.md", "docs/api.md", "figures/REPORT.md"):
        assert f"\n  {path} " in out and (root / path).exists(), path


def test_a_figure_writes_to_git_ignored_results_by_default_so_the_quick_start_leaves_the_checkout_clean():
    from pathlib import Path

    from minigcnc.experiments.cli import figure_outputs

    assert figure_outputs("figure3", "laptop") == (Path("results/figure3.png"), Path("results/figure3.json"))
    root = Path(__file__).resolve().parents[1]
    assert "/results/" in (root / ".gitignore").read_text().split()
    assert "results/figure3.png" in (root / "README.md").read_text()


# ---- one line for every fault (issue 33 items 6 and 10) -------------------------------------------------------

@pytest.mark.parametrize("argv,line", [
    (["--cache", ""], "--cache: got an empty string; give a value, or leave the option out for its default"),
    (["--dask", ""], "--dask: got an empty string; give a value, or leave the option out for its default"),
    (["--out", " "], "--out: got an empty string; give a value, or leave the option out for its default"),
    (["--jobs", "99999999999999999999"], "--jobs must be at most 1024 (it is capped by the runs to train anyway); "
                                         "got 99999999999999999999"),
    (["--seeds", "99999999999999999999"], "--seeds must be at most 10000 (each seed is a training run per sweep "
                                          "point); got 99999999999999999999"),
], ids=["cache", "dask", "out", "jobs", "seeds"])
def test_empty_strings_and_absurd_integers_are_refused_in_one_line(tmp_path, capsys, nothing_trains, argv, line):
    from minigcnc import figure3

    with pytest.raises(SystemExit) as stop:
        figure3.main(["--scale", "tiny", "--out", str(tmp_path), *argv] if "--out" not in argv else
                     ["--scale", "tiny", *argv])
    assert stop.value.code == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == f"python -m minigcnc.figure3: error: {line}"


def test_an_empty_dataset_is_refused_too(tmp_path, capsys, nothing_trains):
    from minigcnc import figure1

    with pytest.raises(SystemExit):
        figure1.main(["--scale", "tiny", "--out", str(tmp_path), "--dataset", ""])
    assert capsys.readouterr().err.strip().endswith("error: --dataset: got an empty string; give a value, or leave "
                                                    "the option out for its default")


def test_a_runs_folder_that_is_a_file_is_named_before_any_work(tmp_path, capsys, nothing_trains):
    from minigcnc import figure3

    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "runs").write_text("a file where the runs go")
    with pytest.raises(SystemExit):
        figure3.main(["--scale", "tiny", "--out", str(tmp_path / "o"), "--cache", str(tmp_path / "c")])
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"python -m minigcnc.figure3: error: --cache {tmp_path / 'c'}: cannot write its runs/ folder (it is a "
        "file, not a folder); give a folder you can write to with --cache DIR")


def tiny_sweep(tmp_path, n=1):
    from minigcnc.experiments import cli
    from minigcnc.experiments.config import scale_base

    args = cli.parse(cli.figure_parser("mine", ""), ["--scale", "tiny", "--out", str(tmp_path / "out"), "--jobs", "1",
                                                     "--cache", str(tmp_path / "cache"), "--quiet"])
    return cli, args, [scale_base("tiny", steps=40, eval_every=20, seed=s) for s in range(n)]


def test_a_full_disk_for_the_cache_ends_with_one_line_saying_what_was_kept(tmp_path, monkeypatch):
    import errno

    from minigcnc.experiments import run as run_module

    cli, args, configs = tiny_sweep(tmp_path)

    def full(path, history):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(run_module, "store_run", full)
    with pytest.raises(SystemExit) as stop:
        cli.run_sweep("mine", args, configs)
    cache = tmp_path / "cache"
    path = next(cache.glob("runs/*.ckpt.npz")).with_suffix("").with_suffix(".json")
    assert str(stop.value) == (f"mine: cannot write {path} (No space left on device). 0 of 1 runs finished and are "
                               f"kept in {cache}, 1 more kept its last checkpoint; the same command resumes from "
                               "there once there is room (or give another --cache)")


def test_a_full_disk_for_the_figure_ends_with_one_line(tmp_path, monkeypatch):
    import errno

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from minigcnc.experiments import cli

    def full(fig, path):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(cli, "save_figure", full)
    with pytest.raises(SystemExit) as stop:
        cli.write_figure("mine", "tiny", tmp_path, plt.figure(), {}, [], time.time())
    assert str(stop.value) == (f"mine: cannot write {tmp_path / 'mine_tiny.png'} (No space left on device); every "
                               "run is kept in the cache: free some space (or give another --out) and run the same "
                               "command again, it draws from the cache in seconds")


def test_a_dataset_that_fails_its_checksum_ends_with_one_line(tmp_path, monkeypatch):
    from minigcnc.experiments import prepare

    cli, args, configs = tiny_sweep(tmp_path)

    def corrupt(dataset, data_root):
        raise ValueError("/data/train-images-idx3-ubyte.gz: md5 mismatch, refusing to load: expected 1, got 2. The "
                         "file is corrupt, truncated or not the official one; delete it and download it again.")

    monkeypatch.setattr(prepare, "source_splits", corrupt)
    with pytest.raises(SystemExit) as stop:
        cli.run_sweep("mine", args, configs)
    assert str(stop.value) == ("mine: /data/train-images-idx3-ubyte.gz: md5 mismatch, refusing to load: expected 1, "
                               "got 2. The file is corrupt, truncated or not the official one; delete it and download "
                               "it again.")  # (before any run trained: nothing to say was kept)


def test_a_worker_killed_twice_ends_with_one_line(tmp_path, monkeypatch):
    from minigcnc.experiments import sweep

    cli, args, configs = tiny_sweep(tmp_path, n=2)
    args.jobs = 2

    def dies(*a, **k):
        raise sweep.WorkerDied("a worker process died 2 times (killed: out of memory, or kill -9); 2 runs were "
                               "left unfinished")
        yield

    monkeypatch.setattr(sweep, "run_parallel_resilient", dies)
    with pytest.raises(SystemExit) as stop:
        cli.run_sweep("mine", args, configs)
    assert str(stop.value) == ("mine: a worker process died 2 times (killed: out of memory, or kill -9); 2 runs were "
                               f"left unfinished. 0 of 2 runs finished and are kept in {tmp_path / 'cache'}; the same "
                               "command resumes from there")


def test_a_killed_worker_costs_only_its_run(tmp_path, monkeypatch, capsys):
    """The first attempt loses a worker; the runs left start again and the sweep finishes."""
    from joblib.externals.loky.process_executor import TerminatedWorkerError

    from minigcnc.experiments import sweep

    _, _, configs = tiny_sweep(tmp_path, n=2)
    attempts = []

    def flaky(configs, cache_dir, jobs, fresh):  # (the runs in this process: no worker to start, seconds saved)
        attempts.append(len(configs))
        if len(attempts) == 1:
            raise TerminatedWorkerError("A worker process managed by the executor was unexpectedly terminated.")
        for c in configs:
            yield sweep.run(c, cache_dir, fresh=fresh, progress=False)

    monkeypatch.setattr(sweep, "run_parallel", flaky)
    hs = sweep.run_many(configs, tmp_path / "cache", jobs=2, progress=False)
    assert attempts == [2, 2] and all(h["status"] == "finished" for h in hs)
    assert "a worker process died (killed: out of memory, or kill -9); starting the 2 runs left again" in \
        capsys.readouterr().err


@pytest.mark.parametrize("phase,what", [
    ("starting", "no run had started, nothing to keep"),
    ("drawing", "every run is kept in the cache; the same command draws the figure again from it"),
    ("writing", "every run is kept in the cache and no file is half-written; the same command writes the figure "
                "again from it"),
])
def test_ctrl_c_outside_the_sweep_ends_with_one_line(phase, what):
    from minigcnc.experiments import cli

    old = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        cli.interrupt_anywhere("demo")
        cli._PHASE["now"] = phase
        with pytest.raises(cli.Interrupted) as stop:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(1)
        assert str(stop.value) == f"\ndemo: interrupted while {phase}: {what}."
        cli._PHASE["now"] = "training"  # the sweep's own handling: KeyboardInterrupt, which run_sweep words
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(1)
    finally:
        for s, h in old.items():
            signal.signal(s, h)
        cli._PHASE["now"] = "starting"


def test_the_banner_says_how_many_runs_resume_from_a_checkpoint(tmp_path, capsys):
    from minigcnc.experiments.cache import run_path
    from minigcnc.experiments.run import train_in_worker

    cli, args, configs = tiny_sweep(tmp_path, n=2)
    runs = tmp_path / "cache" / "runs"
    train_in_worker(configs[0].to_dict(), str(runs), False, keep_checkpoint=True)
    assert run_path(configs[0], tmp_path / "cache").with_suffix(".ckpt.npz").exists()
    cli.run_sweep("mine", args, configs)
    assert (f"mine: scale=tiny, 2 runs: 0 from the cache, 2 to train (1 resuming from their last checkpoint); "
            f"cache {tmp_path / 'cache'}") in capsys.readouterr().err


def test_the_backend_advice_is_worded_for_the_command_line(tmp_path, monkeypatch):
    from minigcnc.experiments import cli

    def no_gpu(name):
        raise ValueError("backend='cupy': CuPy is installed but no usable CUDA GPU was found (x). Use backend='numpy' "
                         "on this machine.")

    monkeypatch.setattr("minigcnc.backend.backend_module", no_gpu)
    _, args, configs = tiny_sweep(tmp_path)
    with pytest.raises(SystemExit) as stop:
        cli.run_sweep("mine", args, configs)
    assert str(stop.value).endswith("Use --backend numpy on this machine.")


def test_a_figure_removes_the_temporary_files_killed_writers_left_in_its_folder(tmp_path, capsys):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from minigcnc.experiments import cli

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = tmp_path / f".mine_tiny.json.tmp-{int(dead.stdout)}"
    stale.write_text("half a JSON")
    os.utime(stale, (time.time() - 3600, time.time() - 3600))
    cli.write_figure("mine", "tiny", tmp_path, plt.figure(), {}, [], time.time())
    assert not stale.exists() and (tmp_path / "mine_tiny.json").exists()


def test_help_imports_neither_scipy_stats_nor_matplotlib():
    import subprocess
    import sys

    code = ("import runpy, sys\nsys.argv = ['figure3', '--help']\ntry:\n    runpy.run_module('minigcnc.figure3', "
            "run_name='__main__')\nexcept SystemExit:\n    pass\nprint('LOADED', 'scipy.stats' in sys.modules, "
            "'matplotlib' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "LOADED False False" in out, out[-300:]
