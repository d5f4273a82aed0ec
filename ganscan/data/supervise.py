"""Supervised decoding workers: a crash or a hang costs one file its row, never the scan.

Each worker process handles one file at a time (for a scan: read, hash, metadata, decode, preprocess,
``ganscan.detectors.inference.process_file``). The main process hands out the files in discovery order and watches every
worker: when one dies (a segfault or abort in a native decoder, the OOM killer, ``kill -9``) or holds a
file longer than ``file_timeout`` seconds, that file gets an ``error`` row saying what happened
(``decoder crashed (signal 11)``, ``timed out after 60 s``), the worker is replaced, and the scan goes on.
Rows come back in discovery order, in batches, so reports stay deterministic whatever the workers do.
"""

from __future__ import annotations

import multiprocessing as mp
import queue
import signal
import threading
import time
from multiprocessing.connection import wait
from typing import Callable, Iterator

import numpy as np
import torch

from ganscan.data.decode import DEFAULT_FILE_TIMEOUT, DEFAULT_MAX_DECODE_BYTES

#: signal numbers -> names for the error rows (SIGSEGV -> "signal 11, SIGSEGV")
_SIGNALS = {s.value: s.name for s in signal.Signals}


def _worker_main(conn, process: Callable, init: Callable | None) -> None:
    import faulthandler

    faulthandler.disable()   # a decoder crash is reported as the file's row, not as a stack dump
    signal.signal(signal.SIGINT, signal.SIG_IGN)   # Ctrl-C is the main process's to handle
    if init is not None:
        init(0)
    while True:
        try:
            job = conn.recv()
        except (EOFError, OSError):
            return
        if job is None:
            return
        index, path, explicit = job
        row, tensors = process(path, explicit)
        arrays: dict = {}   # a tensor shared by several detectors crosses the pipe once
        payload = None if tensors is None else tuple(arrays.setdefault(id(t), _as_arrays(t)) for t in tensors)
        try:
            conn.send((index, row, payload))
        except (BrokenPipeError, OSError):
            return


def _as_arrays(t):
    """A tensor, or a named tuple of them (a detector's two reads), as numpy arrays to cross the pipe."""
    return type(t)(*map(_as_arrays, t)) if isinstance(t, tuple) else t.numpy()


def _as_tensors(a):
    return type(a)(*map(_as_tensors, a)) if isinstance(a, tuple) else torch.from_numpy(a)


class _Worker:
    def __init__(self, ctx, process: Callable, init: Callable | None):
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_worker_main, args=(child, process, init), daemon=True)
        self.proc.start()
        child.close()
        self.job: tuple[int, str, bool] | None = None
        self.started = 0.0

    def give(self, job: tuple[int, str, bool]) -> bool:
        """Hand over a file; False when the worker is already dead (killed while it waited for work)."""
        self.job, self.started = job, time.monotonic()
        try:
            self.conn.send(job)
        except (BrokenPipeError, OSError):
            return False
        return True

    def stop(self, kill: bool = False) -> None:
        try:
            if kill:
                self.proc.kill()
            else:
                self.conn.send(None)
        except (BrokenPipeError, OSError):
            pass
        self.proc.join(timeout=0 if kill else 2)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join(timeout=5)
        self.conn.close()


def death_reason(exitcode: int | None) -> str:
    if exitcode is not None and exitcode < 0:
        name = _SIGNALS.get(-exitcode)
        return f"decoder crashed (signal {-exitcode}{', ' + name if name else ''})"
    return f"decoder worker exited unexpectedly (exit code {exitcode})"


def is_worker_failure(error: str | None) -> bool:
    """Whether an error row says its file crashed or stalled a worker (retrying it would do so again)."""
    return bool(error) and error.startswith(("decoder crashed", "timed out after", "decoder worker exited"))


def supervised_items(jobs: Iterator[tuple[str, bool]], process: Callable, failed_row: Callable[[str, str], dict],
                     workers: int, batch_size: int, file_timeout: float | None, init: Callable | None = None,
                     prefetch: int = 2, on_failure: Callable[[dict], None] | None = None,
                     ) -> Iterator[list[tuple[dict, tuple[torch.Tensor, ...] | None]]]:
    """Batches of ``(row, tensors)`` in the order of ``jobs``; ``process(path, explicit)`` runs in a worker and
    returns a row and a tuple of tensors (or None).

    ``failed_row(path, reason)`` makes the row of a file whose worker died or timed out; ``on_failure(row)``,
    when given, is called with it at once (from the supervisor thread), before the next file is handed
    out, so the caller can journal it. The supervisor runs in a thread and keeps up to ``prefetch``
    finished batches ready, so decoding goes on while the caller runs the model (as a DataLoader's
    prefetching does).
    """
    ctx = mp.get_context("fork")
    pool = [_Worker(ctx, process, init) for _ in range(max(1, workers))]
    out: queue.Queue = queue.Queue(maxsize=max(1, prefetch))
    stop = threading.Event()

    def run():
        gen = _supervise(ctx, pool, jobs, process, failed_row, batch_size, file_timeout, init, stop, on_failure)
        try:
            for batch in gen:
                while not stop.is_set():
                    try:
                        out.put(("batch", batch), timeout=0.2)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            out.put(("end", None))
        except BaseException as exc:  # handed to the caller, who raises it
            out.put(("error", exc))
        finally:
            gen.close()

    thread = threading.Thread(target=run, name="ganscan-supervisor", daemon=True)
    thread.start()
    try:
        while True:
            kind, value = out.get()
            if kind == "batch":
                yield value
            elif kind == "end":
                return
            else:
                raise value
    finally:
        stop.set()
        thread.join(timeout=30)


def _supervise(ctx, pool: list, jobs, process, failed_row, batch_size: int, file_timeout: float | None,
               init, stop: threading.Event, on_failure=None):
    done: dict[int, tuple[dict, tuple[torch.Tensor, ...] | None]] = {}
    source = ((i, path, explicit) for i, (path, explicit) in enumerate(jobs))
    exhausted, next_out, batch = False, 0, []
    try:
        while not stop.is_set():
            for k, w in enumerate(pool):
                if w.job is None and not exhausted:
                    job = next(source, None)
                    if job is None:
                        exhausted = True
                    elif not w.give(job):   # it never saw the file: a fresh worker takes it
                        w.stop(kill=True)
                        pool[k] = _Worker(ctx, process, init)
                        pool[k].give(job)
            busy = [w for w in pool if w.job is not None]
            if not busy:
                break
            now = time.monotonic()
            timeout = 0.5   # wake up now and then to notice a stop
            if file_timeout:
                timeout = min(timeout, max(0.0, min(w.started + file_timeout for w in busy) - now))
            wait([w.conn for w in busy] + [w.proc.sentinel for w in busy], timeout)
            for k, w in enumerate(pool):
                if w.job is None:
                    continue
                index, path, _ = w.job
                result = None
                try:
                    if w.conn.poll():
                        result = w.conn.recv()
                except (EOFError, OSError):
                    result = None
                if result is not None:
                    i, row, payload = result
                    done[i] = (row, None if payload is None else tuple(map(_as_tensors, payload)))
                    w.job = None
                    continue
                if not w.proc.is_alive():
                    w.proc.join(timeout=1)
                    reason = death_reason(w.proc.exitcode)
                elif file_timeout and time.monotonic() - w.started >= file_timeout:
                    reason = f"timed out after {file_timeout:g} s"
                else:
                    continue
                row = failed_row(path, reason)
                if on_failure is not None:
                    on_failure(row)
                done[index] = (row, None)
                w.job = None
                w.stop(kill=True)
                pool[k] = _Worker(ctx, process, init)
            while next_out in done:
                batch.append(done.pop(next_out))
                next_out += 1
                if len(batch) >= batch_size:
                    yield batch
                    batch = []
        if batch and not stop.is_set():
            yield batch
    finally:
        for w in pool:
            w.stop(kill=w.job is not None)


def supervised_map(func: Callable, items, failed: Callable, workers: int = 1,
                   file_timeout: float | None = DEFAULT_FILE_TIMEOUT,
                   init: Callable | None = None) -> Iterator:
    """``func(item)`` for each item, each in a supervised worker, results in the order of ``items``;
    ``failed(item, reason)`` is the result of an item whose worker crashed or ran out of time."""
    def process(item, _explicit):
        return func(item), None

    for batch in supervised_items(((item, False) for item in items), process, failed, workers, 1, file_timeout,
                                  init=init, prefetch=1):
        for result, _ in batch:
            yield result


def decoded_images(paths, max_pixels: int, file_timeout: float | None = DEFAULT_FILE_TIMEOUT,
                   max_bytes: int = DEFAULT_MAX_DECODE_BYTES):
    """``(path, RGB image or None, FileInfo or None, error or None)`` per path, in order: every file is read
    and decoded in a supervised worker, so a decoder that crashes or hangs costs that file a one-line error."""
    from PIL import Image

    from ganscan.data import decode

    def load(path):
        try:
            img, info = decode.load_image(path, max_pixels, max_bytes)
        except decode.DecodeError as exc:
            return None, None, str(exc)
        except Exception as exc:  # a decoder bug: that file's error, not the command's
            return None, None, f"decoder failure: {type(exc).__name__}: {exc}"[:200]
        return np.asarray(img), info, None

    paths = list(paths)
    results = supervised_map(load, paths, lambda _path, reason: (None, None, reason), 1, file_timeout)
    for path, (arr, info, error) in zip(paths, results):
        yield path, (None if arr is None else Image.fromarray(arr)), info, error
