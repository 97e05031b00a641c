"""experiments/progress.py: one bar over the runs of a sweep, with the steps of the runs in progress."""
import io
import time

import numpy as np

from minigcnc.experiments.progress import RunsBar


def wait_for(predicate, timeout=5.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


def write_checkpoint(path, step):
    """What ``train.fit`` writes at each evaluation, as far as the bar reads it: a ``step`` array."""
    with open(path, "wb") as f:
        np.savez(f, step=np.array(step), p0=np.zeros(3))


def test_the_bar_counts_finished_runs(tmp_path):
    out = io.StringIO()
    with RunsBar(3, jobs=1, file=out) as bar:
        bar.finished({"status": "finished"})
        bar.finished({"status": "finished"})
    text = out.getvalue()
    assert "runs (1 job)" in text and "2/3" in text


def test_a_parallel_bar_shows_the_steps_of_the_runs_in_progress(tmp_path):
    a, b = tmp_path / "a.ckpt.npz", tmp_path / "b.ckpt.npz"
    out = io.StringIO()
    with RunsBar(2, jobs=2, file=out, configs=[(a, 2000), (b, 2000)], interval=0.02) as bar:
        write_checkpoint(a, 750)
        assert wait_for(lambda: "steps 750/2000" in out.getvalue()), out.getvalue()
        write_checkpoint(b, 250)
        assert wait_for(lambda: "steps 750/2000 250/2000" in out.getvalue()), out.getvalue()
        a.unlink()  # run a finished: its checkpoint is removed, the bar moves on
        bar.finished({"status": "finished"})
        assert wait_for(lambda: out.getvalue().rstrip().endswith("steps 250/2000]")), out.getvalue()
    text = out.getvalue()
    assert "runs (2 jobs)" in text and "1/2" in text


def test_a_diverged_run_is_named_and_a_disabled_bar_draws_nothing(tmp_path):
    out = io.StringIO()
    with RunsBar(1, file=out) as bar:
        bar.finished({"status": "diverged", "message": "diverged at step 40 (loss nan)"})
    assert "diverged: diverged at step 40 (loss nan)" in out.getvalue()
    quiet = io.StringIO()
    with RunsBar(2, jobs=2, enabled=False, file=quiet, configs=[(tmp_path / "x.ckpt.npz", 10)]) as bar:
        bar.finished({"status": "finished"})
    assert quiet.getvalue() == "" and bar._thread is None


def test_piped_output_gets_one_line_per_finished_run_instead_of_a_bar(capsys):
    with RunsBar(2, jobs=2) as bar:  # (stderr is not a terminal under pytest: no bar is drawn)
        bar.finished({"status": "finished", "seconds": 3.2})
        bar.finished({"status": "diverged", "seconds": 1.0})
    assert capsys.readouterr().err.splitlines() == ["runs: 1/2 done (finished, 3 s)", "runs: 2/2 done (diverged, 1 s)"]
    with RunsBar(1, enabled=False) as bar:
        bar.finished({"status": "finished"})
    assert capsys.readouterr().err == ""


def test_piped_output_gets_the_steps_of_the_runs_in_progress_now_and_then(tmp_path, capsys):
    a = tmp_path / "a.ckpt.npz"
    write_checkpoint(a, 40)
    with RunsBar(1, jobs=1, configs=[(a, 200)], interval=0.02) as bar:
        bar.line_every = 0.05
        assert wait_for(lambda: "runs: 0/1 done; steps 40/200" in capsys.readouterr().err)
