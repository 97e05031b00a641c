"""Sweeps on a Dask cluster: ``local[:N]`` starts a LocalCluster here, ``tcp://host:port`` uses a running one.

Each run is one task, the function the caller hands ``run_on_dask`` (a sweep hands ``run.train_in_worker``):
the worker trains and sends the history back; the client writes it to its own cache, so workers need no shared
file system (only ``minigcnc`` installed, the same version, and the data). This module imports nothing of the
engine: the task comes in as an argument. Start a cluster by hand with::

    dask scheduler                          # prints the address, e.g. tcp://10.0.0.5:8786
    dask worker tcp://10.0.0.5:8786 --nworkers 4 --nthreads 1    # on each machine
    python -m minigcnc.figure1 --dask tcp://10.0.0.5:8786

Needs the ``dask`` extra: ``pip install -e ".[dask]"``.
"""
import re
import tempfile
from pathlib import Path

LOCAL = re.compile(r"^local(?::([1-9]\d*))?$")
# a scheduler's address as Dask prints it: tcp://10.0.0.5:8786, tls://host:8786, tcp://[::1]:8786, inproc://...
SCHEDULER = re.compile(r"^(tcp|tls|ws|wss|ucx)://(\[[0-9a-fA-F:.]+\]|[^\s:/\[\]]+):\d+/?$|^inproc://\S+$")


def check_address(address):
    """Return ``address`` when it is ``local``, ``local:N`` (N >= 1) or a scheduler's address
    (``tcp://host:port``, also tls/ws/wss/ucx, or an in-process ``inproc://...``); else raise a ValueError that
    says what is accepted."""
    if LOCAL.match(address or "") or SCHEDULER.match(address or ""):
        return address
    raise ValueError(f"--dask: got {address!r}; give 'local' or 'local:N' (a LocalCluster of N workers on this "
                     "machine) or a scheduler address 'tcp://host:port' (start one with `dask scheduler`)")


def import_distributed():
    """``dask.distributed``, or a ValueError that names the extra to install."""
    try:
        import dask.distributed as distributed
    except ImportError as e:
        raise ValueError("--dask needs dask.distributed: pip install -e \".[dask]\"") from e
    return distributed


def worker_checkpoint_dir():
    """Where a task keeps its run's checkpoint: ``minigcnc-checkpoints`` in the Dask worker's own local
    directory (its scratch space), or in the temporary folder outside a worker."""
    try:
        from distributed import get_worker

        base = get_worker().local_directory
    except (ImportError, ValueError, AttributeError):
        base = tempfile.gettempdir()
    return str(Path(base) / "minigcnc-checkpoints")


def run_on_dask(task, configs, address, fresh, checkpoint_dir=None, timeout=30):
    """Yield the history of every config as its task finishes on the cluster at ``address``.

    ``task(config_dict, checkpoint_dir, fresh) -> history``: trains one run in a worker (``run.train_in_worker``;
    a module-level function, so that Dask can send it). ``checkpoint_dir``: a folder on the workers' disks for the
    checkpoints of runs in progress (None: each worker's own local directory, ``worker_checkpoint_dir``).
    """
    check_address(address)
    distributed = import_distributed()
    m = LOCAL.match(address)
    cluster = None
    try:
        if m:
            n = int(m.group(1) or 2)
            cluster = distributed.LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                                               dashboard_address=None)
            client = distributed.Client(cluster)
        else:
            try:
                client = distributed.Client(address, timeout=timeout)
            except OSError as e:
                raise ValueError(f"--dask: no Dask scheduler answered at {address} within {timeout} s ({e}). Start "
                                 "one with `dask scheduler` and workers with `dask worker ADDRESS`, or use "
                                 "--dask local") from None
        with client:
            futures = [client.submit(task, c.to_dict(), checkpoint_dir, fresh, pure=False) for c in configs]
            for future in distributed.as_completed(futures):
                yield future.result()
    finally:
        if cluster is not None:
            cluster.close()
