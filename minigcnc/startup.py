"""A start-up guard, run first by ``import minigcnc``: when the process is a figure command or ``reproduce``,
Ctrl-C while the package is still being imported ends the command with one line instead of an import traceback
(``quiet_interrupt_while_starting``). A library user's ``import minigcnc`` is left alone.

Not part of the runs' code hash (``experiments/cache.py``): it only handles a signal before anything starts.
"""


def quiet_interrupt_while_starting(argv=None):
    """When this process is ``python -m minigcnc.figure...`` or ``python -m minigcnc.reproduce`` (``argv``:
    ``sys.orig_argv``), make SIGINT and SIGTERM end it with one line until the command line is parsed (the
    figure's parser then installs its own handler, ``experiments.cli.interrupt_anywhere``): nothing has started,
    so nothing is lost. Returns whether it did; any other process (a library user's import) is left alone."""
    import signal
    import sys
    import threading

    argv = list(getattr(sys, "orig_argv", []) if argv is None else argv)
    module = next((argv[i + 1] for i, a in enumerate(argv[:-1]) if a == "-m"), "")
    if not (module.startswith("minigcnc.figure") or module == "minigcnc.reproduce"):
        return False
    if threading.current_thread() is not threading.main_thread():
        return False

    def handler(signum, frame):
        raise SystemExit(f"\npython -m {module}: interrupted while starting: no run had started, nothing to keep.")

    for name in ("SIGINT", "SIGTERM"):
        sig = getattr(signal, name, None)
        if sig is not None and signal.getsignal(sig) in (signal.default_int_handler, signal.SIG_DFL):
            signal.signal(sig, handler)
    return True
