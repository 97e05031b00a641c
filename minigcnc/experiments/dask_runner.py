"""Sweeps on a Dask cluster: ``local[:N]`` starts a LocalCluster here, ``tcp://host:port`` uses a running one.

Each run is one task, ``sweep.train_in_worker``: the worker trains and sends the history back; the client
writes it to its own cache, so workers need no shared file system (only ``minigcnc`` installed, the same
version, and the data). Start a cluster by hand with::

    dask scheduler                          # prints the address, e.g. tcp://10.0.0.5:8786
    dask worker tcp://10.0.0.5:8786 --nworkers 4 --nthreads 1    # on each machine
    python -m minigcnc.figure1 --dask tcp://10.0.0.5:8786

Needs the ``dask`` extra: ``pip install -e ".[dask]"``.
"""
import re
import tempfile
from pathlib import Path

LOCAL = re.compile(r"^local(?::(\d+))?$")


def check_address(address):
    """Raise a ValueError that says what is accepted unless ``address`` is ``local``, ``local:N`` or
    ``tcp://host:port`` (or another ``scheme://host:port``)."""
    if LOCAL.match(address or ""):
        return address
    if re.match(r"^[a-z]+://[^:/]+:\d+$", address or ""):
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


def run_on_dask(configs, address, fresh, checkpoint_dir=None, timeout=30):
    """Yield the history of every config as its task finishes on the cluster at ``address``."""
    from .sweep import train_in_worker

    check_address(address)
    distributed = import_distributed()
    m = LOCAL.match(address)
    checkpoint_dir = checkpoint_dir or str(Path(tempfile.gettempdir()) / "minigcnc-checkpoints")
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
            futures = [client.submit(train_in_worker, c.to_dict(), checkpoint_dir, fresh, pure=False) for c in configs]
            for future in distributed.as_completed(futures):
                yield future.result()
    finally:
        if cluster is not None:
            cluster.close()
