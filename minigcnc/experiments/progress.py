"""The progress display of a sweep: one bar over its runs, with the steps of the runs in progress.

Runs trained one after another show their own bar of steps beneath. Runs trained in parallel processes
write a checkpoint at every evaluation (``train.fit``); a background thread reads the step of each such
checkpoint in the cache folder once a second and shows them as the bar's postfix (``steps 750/2000
250/2000``), so the bar moves while runs are still going. Under Dask the workers that see the cache folder
keep their checkpoints there too (``sweep.run_dask``), and the bar reads them the same way; the others' lie on
their own disks. When stderr is not a terminal (piped to a file or a log), the bar is not drawn: one line per
finished run is written instead, and the steps of the runs in progress every 30 seconds, so a log never stays
silent for long.
"""
import threading
from pathlib import Path

import numpy as onp


class RunsBar:
    """A tqdm bar over ``total`` runs (``finished(history)`` advances it); a context manager."""

    def __init__(self, total, jobs=1, dask=None, enabled=True, configs=(), file=None, interval=1.0):
        """``configs``: (checkpoint path, total steps) of each run to train, for the steps postfix; ``file``:
        where the bar is drawn (default: stderr, and only on a terminal); ``interval``: seconds between two
        reads of the checkpoints."""
        self.total, self.jobs, self.dask, self.enabled = total, jobs, dask, enabled
        self.file, self.interval = file, interval
        self.line_every = 30.0  # seconds between two lines of steps when stderr is not a terminal
        self.steps = {Path(p): s for p, s in configs}
        self.inner_bars = enabled and jobs == 1 and not dask
        self.bar = None
        self._stop = threading.Event()
        self._thread = None
        self._shown = ""

    def __enter__(self):
        from tqdm.auto import tqdm

        where = f"dask {self.dask}" if self.dask else (f"{self.jobs} jobs" if self.jobs > 1 else "1 job")
        # disable=None: drawn on a terminal only; a ``file`` given is always drawn on
        disable = (None if self.file is None else False) if self.enabled else True
        self.bar = tqdm(total=self.total, desc=f"runs ({where})", unit="run", disable=disable, file=self.file)
        self.lines = self.enabled and self.file is None and self.bar.disable  # not a terminal: plain lines
        self.done = 0
        if self.enabled and self.steps and (self.dask or self.jobs > 1 or self.lines):
            self._thread = threading.Thread(target=self._poll, daemon=True)
            self._thread.start()
        return self

    def _poll(self):
        import sys
        import time

        last_line = time.monotonic()
        while not self._stop.wait(self.interval):
            shown = []
            for ckpt, total in self.steps.items():
                if ckpt.exists():
                    try:
                        with onp.load(ckpt, allow_pickle=False) as f:
                            shown.append(f"{int(f['step'])}/{total}")
                    except Exception:  # replaced while we read it: the next poll will see the new one
                        pass
            text = "steps " + " ".join(shown) if shown else ""
            if self.lines and text and time.monotonic() - last_line >= self.line_every:  # a log hears every 30 s
                last_line = time.monotonic()
                print(f"runs: {self.done}/{self.total} done; {text}", file=sys.stderr, flush=True)
            if text != self._shown and self.bar is not None:  # (a finished run's checkpoint is gone)
                self._shown = text
                self.bar.set_postfix_str(text, refresh=True)

    def finished(self, history):
        self.done += 1
        if self.lines:
            import sys

            status = (history or {}).get("status", "finished")
            print(f"runs: {self.done}/{self.total} done ({status}, {(history or {}).get('seconds', 0):.0f} s)",
                  file=sys.stderr, flush=True)
        if self.bar is not None:
            self.bar.update(1)
            if history and history.get("status") == "diverged":
                self.bar.write(f"diverged: {history.get('message', '')}", file=self.file)

    def __exit__(self, *exc):
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
        if self.bar is not None:
            self.bar.close()
        return False
