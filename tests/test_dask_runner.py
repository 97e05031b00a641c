"""experiments/dask_runner.py: sweeps on a Dask cluster whose workers share no disk and no folder with the client."""
import os
import time

import pytest

from minigcnc.experiments import sweep
from minigcnc.experiments.cache import load_run, run_path
from minigcnc.experiments.config import RunConfig
from minigcnc.experiments.dask_runner import check_address, run_on_dask, worker_checkpoint_dir

TINY = RunConfig(dataset="digits", model="mlp", hidden=(16, 8), lr=0.1, batch_size=32, steps=60, eval_every=20,
                 eval_per_class=5)


@pytest.mark.parametrize("address", ["local", "local:2", "tcp://h:8786", "tcp://10.0.0.5:8786",
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
        ckpt_dir = client.submit(worker_checkpoint_dir, pure=False).result()  # the worker's own scratch folder:
        assert ckpt_dir.startswith(str(scratch))  # unused, since this worker sees the client's cache (a probe file
        assert not os.path.isdir(ckpt_dir) or os.listdir(ckpt_dir) == []  # there says so): checkpoints went there
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

    out = figure3.main(["--scale", "tiny", "--out", str(tmp_path), "--dask", "local:1", "--quiet", "--seeds", "1"])
    assert all(h["status"] == "finished" for h in out["histories"])
    import re

    assert re.search(r"figure3: scale=tiny, (\d+) runs: 0 from the cache, \1 to train", capsys.readouterr().err)
    assert os.path.exists(out["png"]) and os.path.exists(out["json"])


# ---- nothing hangs: one line for an address that is not a scheduler, has no workers or loses them --------------

@pytest.mark.parametrize("address", ["tls://127.0.0.1:9", "wss://h:8786", "ucx://h:8786"])
def test_tls_and_the_other_protocols_are_refused_up_front_with_the_way_around(address):
    with pytest.raises(ValueError, match=r"^--dask: \w+:// addresses are not supported .* use a tcp:// scheduler"):
        check_address(address)


def serve_once(reply):
    """A TCP server on a free port of 127.0.0.1 that answers each connection with ``reply`` (None: says nothing);
    returns (address, stop)."""
    import socket
    import threading

    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(4)
    srv.settimeout(0.2)
    stop = threading.Event()

    def serve():
        conns = []
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
            except OSError:
                continue
            conns.append(conn)
            if reply is not None:
                try:
                    conn.recv(64)
                    conn.sendall(reply)
                except OSError:
                    pass
        for c in conns:
            c.close()
        srv.close()

    threading.Thread(target=serve, daemon=True).start()
    return f"tcp://127.0.0.1:{srv.getsockname()[1]}", stop


@pytest.mark.parametrize("reply,what", [(b"HTTP/1.0 400 Bad request\r\n\r\n", "an HTTP server answered"),
                                        (None, "it said nothing within 1 s")])
def test_an_address_that_is_not_a_dask_scheduler_is_named_in_one_line_within_the_time_limit(reply, what):
    from minigcnc.experiments.dask_runner import handshake

    address, stop = serve_once(reply)
    try:
        with pytest.raises(ValueError) as e:
            handshake(address, timeout=1)
        assert str(e.value).startswith(f"--dask: {address} is not a Dask scheduler ({what})") and "\n" not in str(e.value)
    finally:
        stop.set()


def test_a_refused_port_is_named_at_once():
    import socket

    from minigcnc.experiments.dask_runner import handshake

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # (closed again: nothing listens there)
    with pytest.raises(ValueError, match=rf"^--dask: no Dask scheduler at tcp://127.0.0.1:{port} \(Connection refused\)"):
        handshake(f"tcp://127.0.0.1:{port}", timeout=5)


def test_a_scheduler_with_no_workers_is_named_in_one_line(tmp_path):
    distributed = pytest.importorskip("dask.distributed")
    from minigcnc.experiments.dask_runner import DaskLost

    with distributed.LocalCluster(n_workers=0, processes=False, dashboard_address=None) as cl:
        with pytest.raises(DaskLost, match=r"^--dask: the scheduler at .* has no workers for 1 s; start some with "):
            list(run_on_dask(echo_task, [TINY], cl.scheduler_address, False, worker_wait=1))


def test_a_scheduler_that_loses_every_worker_mid_sweep_is_named_in_one_line(tmp_path):
    distributed = pytest.importorskip("dask.distributed")
    from minigcnc.experiments.dask_runner import DaskLost

    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False,
                                  dashboard_address=None) as cl:
        gen = run_on_dask(sleepy_task, [TINY.replace(seed=s) for s in range(2)], cl.scheduler_address, False,
                          worker_wait=1)
        assert next(gen)["seed"] in (0, 1)
        for w in list(cl.workers.values()):
            cl.sync(w.close)  # every worker goes
        with pytest.raises(DaskLost, match=r"^--dask: every worker of the scheduler at .* is gone"):
            list(gen)


def sleepy_task(config_dict, checkpoint_dir, fresh):
    """The first seed answers at once, the others after a while (so that they are in flight when the workers go)."""
    if config_dict["seed"]:
        time.sleep(3)
    return {"seed": config_dict["seed"]}


@pytest.mark.slow  # (~30 s: the in-process cluster takes its time to close after losing its scheduler)
def test_a_scheduler_lost_mid_sweep_is_named_in_one_line():
    distributed = pytest.importorskip("dask.distributed")
    from minigcnc.experiments.dask_runner import DaskLost

    cl = distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None)
    try:
        gen = run_on_dask(sleepy_task, [TINY.replace(seed=s) for s in range(2)], cl.scheduler_address, False,
                          timeout=2, worker_wait=1)
        assert next(gen)["seed"] in (0, 1)
        cl.sync(cl.scheduler.close)
        with pytest.raises(DaskLost, match=r"^--dask: (lost the scheduler at|every worker of the scheduler at) "):
            list(gen)
    finally:
        cl.close()


def test_an_interrupted_dask_sweep_resumes_from_its_checkpoint_in_the_shared_cache(tmp_path, monkeypatch):
    """A worker that sees the client's cache keeps its checkpoint in ``runs/`` (here: as one stopped after its
    last checkpoint left it); the rerun's task resumes from it, and the client removes it once the run is kept."""
    distributed = pytest.importorskip("dask.distributed")
    from minigcnc import train
    from minigcnc.experiments.run import train_in_worker

    runs = tmp_path / "runs"
    runs.mkdir()
    train_in_worker(TINY.to_dict(), str(runs), False, keep_checkpoint=True)
    ckpt = run_path(TINY, tmp_path).with_suffix(".ckpt.npz")
    assert ckpt.exists()
    resumed, real = [], train._resume_or_discard

    def spy(*args):
        out = real(*args)
        resumed.append(None if out is None else out[2])
        return out

    monkeypatch.setattr(train, "_resume_or_discard", spy)
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None) as cl:
        (h,) = sweep.run_many([TINY], tmp_path, dask=cl.scheduler_address, progress=False)
    assert resumed == [TINY.steps] and not ckpt.exists() and load_run(TINY, tmp_path) == h
    assert not list(runs.glob(".dask-probe-*"))
    assert h["evals"] == sweep.run_many([TINY], tmp_path / "seq", progress=False)[0]["evals"]


def test_a_worker_that_does_not_see_the_clients_cache_keeps_its_checkpoint_in_its_own_folder(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(sweep, "train_in_worker", lambda *a, **k: calls.append((a, k)))
    (tmp_path / ".dask-probe-x").write_text("")
    sweep.dask_task(TINY.to_dict(), str(tmp_path), False, probe=".dask-probe-x")
    sweep.dask_task(TINY.to_dict(), str(tmp_path), False, probe=".dask-probe-y")  # not there: another machine
    assert [(a[1], k["keep_checkpoint"]) for a, k in calls] == [(str(tmp_path), True), (None, False)]
