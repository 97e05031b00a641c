"""Sweeps on a Dask cluster: ``local[:N]`` starts a LocalCluster here, ``tcp://host:port`` uses a running one.

Each run is one task, the function the caller hands ``run_on_dask`` (a sweep hands ``run.train_in_worker``):
the worker trains and sends the history back; the client writes it to its own cache, so workers need no shared
file system (only ``minigcnc`` installed, the same version, and the data). This module imports nothing of the
engine: the task comes in as an argument. Start a cluster by hand with::

    dask scheduler                          # prints the address, e.g. tcp://10.0.0.5:8786
    dask worker tcp://10.0.0.5:8786 --nworkers 4 --nthreads 1    # on each machine
    python -m minigcnc.figure1 --dask tcp://10.0.0.5:8786

Needs the ``dask`` extra: ``pip install -e ".[dask]"``.

Nothing hangs and nothing prints a traceback: before the client connects, a handshake with a time limit
(``handshake``) says in one line when nothing listens at the address, when what answers is not a Dask
scheduler (an HTTP server, say) or when nothing answers at all; a scheduler with no worker is waited for
``WORKER_WAIT`` seconds, and one whose workers are all gone for as long mid-sweep; a scheduler lost mid-sweep
ends it with one line (``DaskLost``: the caller says what was kept). Only ``tcp://`` (and the in-process
``inproc://``) addresses are taken: ``tls://`` needs certificates this command has no option for, so it is
refused up front with the way around it (an SSH tunnel to a ``tcp://`` scheduler).
"""
import re
import socket
import tempfile
import time
from pathlib import Path

LOCAL = re.compile(r"^local(?::([1-9]\d*))?$")
# a scheduler's address as Dask prints it: tcp://10.0.0.5:8786, tls://host:8786, tcp://[::1]:8786, inproc://...
SCHEDULER = re.compile(r"^(tcp|tls|ws|wss|ucx)://(\[[0-9a-fA-F:.]+\]|[^\s:/\[\]]+):\d+/?$|^inproc://\S+$")


WORKER_WAIT = 60  # seconds a scheduler may have no worker (at the start, or all lost mid-sweep)
HANDSHAKE_TIMEOUT = 10  # seconds for the scheduler to answer the first bytes


class DaskLost(RuntimeError):
    """The cluster went away mid-sweep (the scheduler, or every worker): the message says which, in one line."""


def check_address(address):
    """Return ``address`` when it is ``local``, ``local:N`` (N >= 1) or a scheduler's address
    (``tcp://host:port``, or an in-process ``inproc://...``); else raise a ValueError that says what is accepted
    (``tls://`` and the other protocols Dask knows get a line of their own: they need options this command
    does not take)."""
    m = SCHEDULER.match(address or "")
    if m and m.group(1) and m.group(1) != "tcp":
        raise ValueError(f"--dask: {m.group(1)}:// addresses are not supported (they need certificates or a "
                         "transport this command takes no option for); use a tcp:// scheduler, on a trusted "
                         "network or through an SSH tunnel (ssh -L 8786:localhost:8786 HOST, then --dask "
                         "tcp://127.0.0.1:8786)")
    if LOCAL.match(address or "") or m:
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


def handshake(address, timeout=HANDSHAKE_TIMEOUT):
    """Raise a one-line ValueError unless a Dask scheduler answers at the ``tcp://host:port`` ``address`` within
    ``timeout`` seconds. A Dask peer speaks first on a new connection (its handshake frames); an HTTP server,
    say, answers only to a request, and then with ``HTTP/``. Bytes of any other kind, even late (a busy
    scheduler), are taken for a scheduler: the client's own connection then says more."""
    m = SCHEDULER.match(address)
    if not m or m.group(1) != "tcp":
        return
    host = m.group(2).strip("[]")
    port = int(address.rstrip("/").rsplit(":", 1)[1])
    start = ("Start one with `dask scheduler` and workers with `dask worker ADDRESS`, or use --dask local")
    try:
        conn = socket.create_connection((host, port), timeout=timeout)
    except socket.timeout:
        raise ValueError(f"--dask: nothing answered at {address} within {timeout} s (a firewall, or a host that is "
                         f"down). {start}") from None
    except OSError as e:
        raise ValueError(f"--dask: no Dask scheduler at {address} ({e.strerror or e}). {start}") from None
    with conn:
        conn.settimeout(timeout / 2)  # a scheduler speaks at once: half the time for it, half for the HTTP probe
        try:
            first = conn.recv(8)
        except socket.timeout:  # silent: ask as an HTTP client would, to name what listens
            try:
                conn.sendall(b"GET / HTTP/1.0\r\n\r\n")
                first = conn.recv(8) or b""
            except socket.timeout:
                first = None
            except OSError:
                first = b""
        except OSError:
            first = b""
        if first and first.startswith(b"HTTP/"):
            what = "an HTTP server answered"
        elif first is None:
            what = f"it said nothing within {timeout} s"
        elif not first:
            what = "it closed the connection"
        else:
            return
    raise ValueError(f"--dask: {address} is not a Dask scheduler ({what}). Give the address `dask scheduler` "
                     "prints (tcp://host:8786 by default), or use --dask local")


def wait_for_workers(client, address, wait=WORKER_WAIT, during=""):
    """Return once the scheduler has a worker; after ``wait`` seconds without one, a one-line ``DaskLost``."""
    import sys

    deadline = time.monotonic() + wait
    said = False
    while not client.scheduler_info().get("workers"):
        if not said:
            print(f"--dask: the scheduler at {address} has no worker yet; waiting up to {wait} s for one (start "
                  f"some with `dask worker {address}`)", file=sys.stderr, flush=True)
            said = True
        if time.monotonic() > deadline:
            raise DaskLost(f"--dask: the scheduler at {address} {during or 'has no workers'} for {wait} s; start "
                           f"some with `dask worker {address}` (on each machine), or use --dask local")
        time.sleep(0.5)


def run_on_dask(task, configs, address, fresh, checkpoint_dir=None, timeout=30, worker_wait=None):
    """Yield the history of every config as its task finishes on the cluster at ``address``.

    ``task(config_dict, checkpoint_dir, fresh) -> history``: trains one run in a worker (``run.train_in_worker``;
    a module-level function, so that Dask can send it). ``checkpoint_dir``: a folder for the checkpoints of runs
    in progress (None: each worker's own local directory, ``worker_checkpoint_dir``). ``worker_wait``: seconds
    without any worker before giving up (default ``WORKER_WAIT``). A bad address, a scheduler with no workers,
    or one lost mid-sweep (or all its workers) raise one line (ValueError before any task, ``DaskLost`` after).
    """
    import logging

    check_address(address)
    distributed = import_distributed()
    wait = WORKER_WAIT if worker_wait is None else worker_wait
    m = LOCAL.match(address)
    cluster = None
    log = logging.getLogger("distributed")
    level = log.level
    log.setLevel(logging.CRITICAL)  # (its tracebacks of a lost connection: DaskLost says it in one line)
    try:
        if m:
            n = int(m.group(1) or 2)
            cluster = distributed.LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                                               dashboard_address=None)
            client = distributed.Client(cluster)
        else:
            handshake(address, timeout=min(timeout, HANDSHAKE_TIMEOUT))
            try:
                client = distributed.Client(address, timeout=timeout)
            except (OSError, TimeoutError) as e:
                raise ValueError(f"--dask: no Dask scheduler answered at {address} within {timeout} s ({e}). Start "
                                 "one with `dask scheduler` and workers with `dask worker ADDRESS`, or use "
                                 "--dask local") from None
        with client:
            wait_for_workers(client, address, wait)
            futures = [client.submit(task, c.to_dict(), checkpoint_dir, fresh, pure=False) for c in configs]
            yield from _results(distributed, client, futures, address, wait)
    finally:
        if cluster is not None:
            cluster.close()
        log.setLevel(level)


def _results(distributed, client, futures, address, wait):
    """Yield each future's result as it finishes, watching that the scheduler and a worker are still there."""
    pending = set(futures)
    no_workers_since = not_running_since = None
    grace = min(wait, 10)  # a busy client may lose its connection for a moment: only a lasting loss ends the sweep
    cancelled = tuple(getattr(distributed.client, n) for n in ("FutureCancelledError", "FuturesCancelledError",
                                                                "CancelledError") if hasattr(distributed.client, n))
    cancelled += (distributed.comm.CommClosedError,)
    lost = cancelled + (OSError, TimeoutError)
    while pending:
        try:
            done, pending = distributed.wait(pending, timeout=2, return_when="FIRST_COMPLETED")
        except distributed.TimeoutError:
            done = set()
        except lost as e:
            raise DaskLost(f"--dask: lost the scheduler at {address} ({type(e).__name__})") from None
        for future in done:
            try:
                result = future.result()
            except cancelled as e:
                raise DaskLost(f"--dask: lost the scheduler at {address} ({type(e).__name__})") from None
            yield result  # (an error of the task itself, a ValueError say, goes to the caller as it is)
        if pending:
            try:
                workers = client.scheduler_info().get("workers") if client.status == "running" else None
            except lost:
                workers = None
            if client.status != "running":
                not_running_since = not_running_since or time.monotonic()
                if time.monotonic() - not_running_since > grace:
                    raise DaskLost(f"--dask: lost the scheduler at {address} (the client is {client.status} for "
                                   f"{grace} s)")
                continue
            not_running_since = None
            if workers:
                no_workers_since = None
            elif no_workers_since is None:
                no_workers_since = time.monotonic()
            elif time.monotonic() - no_workers_since > wait:
                raise DaskLost(f"--dask: every worker of the scheduler at {address} is gone (none for {wait} s); "
                               f"start some with `dask worker {address}`")
