"""experiments/dask_runner.py: sweeps on a Dask cluster whose workers share no disk and no folder with the client."""
import os

import pytest

from minigcnc.experiments import sweep
from minigcnc.experiments.cache import load_run, run_path
from minigcnc.experiments.config import RunConfig
from minigcnc.experiments.dask_runner import check_address, run_on_dask, worker_checkpoint_dir

TINY = RunConfig(dataset="digits", model="mlp", hidden=(16, 8), lr=0.1, batch_size=32, steps=60, eval_every=20,
                 eval_per_class=5)


@pytest.mark.parametrize("address", ["local", "local:2", "tcp://h:8786", "tcp://10.0.0.5:8786", "tls://h:8786",
                                     "tcp://[::1]:8786", "inproc://10.0.0.5/1234/1"])
def test_accepted_addresses(address):
    assert check_address(address) == address


@pytest.mark.parametrize("address", ["local:x", "foo", "local:0", "tcp://h", "h:8786", ""])
def test_refused_addresses_say_what_is_accepted(address):
    with pytest.raises(ValueError) as e:
        check_address(address)
    assert str(e.value) == (f"--dask: got {address!r}; give 'local' or 'local:N' (a LocalCluster of N workers on "
                            "this machine) or a scheduler address 'tcp://host:port' (start one with `dask scheduler`)")


def files_under(folder):
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


def test_a_sweep_on_workers_that_do_not_share_the_clients_folders(tmp_path, monkeypatch):
    """The worker runs in its own working directory with its own scratch folder; the client's cache (a relative
    path, so a worker writing it would write under its own folder) gets every history, written by the client."""
    distributed = pytest.importorskip("dask.distributed")
    client_dir, worker_dir, scratch = tmp_path / "client", tmp_path / "worker", tmp_path / "scratch"
    for d in (client_dir, worker_dir, scratch):
        d.mkdir()
    monkeypatch.chdir(client_dir)
    cfgs = [TINY.replace(seed=s) for s in range(2)]
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None,
                                  local_directory=str(scratch)) as cluster, distributed.Client(cluster) as client:
        client.run(os.chdir, str(worker_dir))
        client.run(os.environ.pop, "MINIGCNC_CACHE", None)  # the worker does not know the client's cache either
        (worker_pid,) = client.run(os.getpid).values()
        hs = sweep.run_many(cfgs, "cache", dask=cluster.scheduler_address, progress=False)
        ckpt_dir = client.submit(worker_checkpoint_dir, pure=False).result()  # where a task keeps its checkpoint:
        assert ckpt_dir.startswith(str(scratch)) and os.path.isdir(ckpt_dir)  # the tasks' checkpoints were in the
        assert os.listdir(ckpt_dir) == []  # worker's scratch folder (removed with it), and each was removed at the end
    assert worker_pid != os.getpid()
    assert [h["status"] for h in hs] == ["finished", "finished"] and [h["config"]["seed"] for h in hs] == [0, 1]
    assert [load_run(c, "cache") for c in cfgs] == hs  # every history is in the client's cache ...
    assert files_under(client_dir) == sorted(f"cache/runs/{run_path(c).name}" for c in cfgs)  # ... and only they
    assert files_under(worker_dir) == []  # the worker wrote nothing in its working directory
    seq = sweep.run_many(cfgs, tmp_path / "seq", jobs=1, progress=False)
    assert [h["evals"] for h in hs] == [h["evals"] for h in seq]


def test_an_in_process_cluster_address_works(tmp_path):
    distributed = pytest.importorskip("dask.distributed")
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None) as cl:
        hs = sweep.run_many([TINY], tmp_path, dask=cl.scheduler_address, progress=False)
    assert hs[0]["status"] == "finished"


def test_the_histories_of_a_worker_running_other_code_are_refused(tmp_path, monkeypatch):
    distributed = pytest.importorskip("dask.distributed")
    monkeypatch.setattr(sweep, "code_hash", lambda: "other-code")  # the client's view; the worker reports its own
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None) as cl:
        with pytest.raises(ValueError, match="a worker ran other code"):
            sweep.run_many([TINY], tmp_path, dask=cl.scheduler_address, progress=False)
    assert not list(tmp_path.rglob("*.json"))


def echo_task(config_dict, checkpoint_dir, fresh):
    """A stand-in for ``run.train_in_worker``: what the worker was given."""
    return {"seed": config_dict["seed"], "checkpoint_dir": checkpoint_dir, "fresh": fresh}


def test_run_on_dask_runs_the_task_it_is_given_on_every_config():
    distributed = pytest.importorskip("dask.distributed")
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None) as cl:
        out = list(run_on_dask(echo_task, [TINY.replace(seed=s) for s in range(3)], cl.scheduler_address, True,
                               checkpoint_dir="ckpts"))
    assert sorted(o["seed"] for o in out) == [0, 1, 2]  # in the order they finish
    assert all(o["checkpoint_dir"] == "ckpts" and o["fresh"] is True for o in out)


def test_a_figure_with_dask_local_end_to_end(tmp_path, capsys):
    pytest.importorskip("dask.distributed")
    from minigcnc import figure3

    out = figure3.main(["--scale", "tiny", "--out", str(tmp_path), "--dask", "local:1", "--quiet"])
    assert all(h["status"] == "finished" for h in out["histories"])
    assert "figure3: scale=tiny, 2 runs: 0 from the cache, 2 to train" in capsys.readouterr().err
    assert os.path.exists(out["png"]) and os.path.exists(out["json"])
