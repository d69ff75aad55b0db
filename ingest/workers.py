"""Extraction workers that a hostile PDF cannot take down with it: each PDF is read in a
process of its own, forked from a forkserver that has the extractor imported (a few ms a
PDF, no fork of the main process after torch started its threads). A PDF that runs past
the time limit has its process killed; one that crashes its process (a segfault, the
memory cap, SIGKILL) fails alone. Either way that item gets a one-line ``PdfError`` and
the others go on.

``ExtractionPool.submit`` returns a ``concurrent.futures.Future``; a monitor thread starts
at most ``workers`` processes at a time and settles the futures.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import multiprocessing.connection
import resource
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any

from core.errors import PaperchatError, PdfError

_PRELOAD = ["ingest.worker_init", "ingest.extract"]


def _preload() -> list[str]:
    """What the forkserver imports once: the extractor, and the main module when it was run
    with -m (each worker sets up ``__main__`` like the parent's: preloaded, that costs
    nothing; ``python script.py`` scripts need the usual ``if __name__ == "__main__"``)."""
    spec = getattr(sys.modules["__main__"], "__spec__", None)
    name = getattr(spec, "name", None)
    main = [name] if name and name != "__main__" and not name.endswith(".__main__") else []
    return [*_PRELOAD, *main]
_POLL_S = 0.5  # the monitor wakes at least this often (new work, shutdown)


def _child(conn: Connection, fn: Callable[..., Any], args: tuple[Any, ...],
           memory_mb: int) -> None:
    """Runs in the worker process: Ctrl-C is the parent's to handle; memory is capped."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if memory_mb > 0:
        cap = memory_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    try:
        conn.send(("ok", fn(*args)))
    except PaperchatError as err:
        conn.send(("error", err))
    except MemoryError:
        conn.send(("memory", None))
    finally:
        conn.close()


@dataclass
class _Task:
    label: str
    fn: Callable[..., Any]
    args: tuple[Any, ...]
    future: Future[Any] = field(default_factory=Future)
    process: BaseProcess | None = None
    conn: Connection | None = None
    deadline: float = 0.0


class ExtractionPool:
    """At most ``workers`` extractions at once, each in its own process, each limited to
    ``timeout_s`` seconds (0: no limit) and ``memory_mb`` of address space (0: no cap)."""

    def __init__(self, workers: int, timeout_s: float, memory_mb: int = 0) -> None:
        self.workers = max(1, workers)
        self.timeout_s = timeout_s
        self.memory_mb = memory_mb
        self._ctx = multiprocessing.get_context("forkserver")
        self._ctx.set_forkserver_preload(_preload())
        self._queue: deque[_Task] = deque()
        self._running: list[_Task] = []
        self._lock = threading.Lock()
        self._wake_r, self._wake_w = multiprocessing.Pipe(duplex=False)
        self._closed = False
        self._thread = threading.Thread(target=self._monitor, name="extraction-pool",
                                        daemon=True)
        self._thread.start()

    def submit(self, label: str, fn: Callable[..., Any], *args: Any) -> Future[Any]:
        """Run ``fn(*args)`` in a worker process; ``label`` names the item in errors."""
        task = _Task(label, fn, args)
        with self._lock:
            if self._closed:
                raise RuntimeError("the extraction pool is shut down")
            self._queue.append(task)
        self._wake()
        return task.future

    def shutdown(self, cancel: bool = False) -> None:
        """Wait for the work (or, with ``cancel``, drop the queue and kill what runs)."""
        with self._lock:
            self._closed = True
            if cancel:
                for task in self._queue:
                    task.future.cancel()
                self._queue.clear()
                for task in self._running:
                    self._kill(task)
        self._wake()
        self._thread.join()
        self._wake_r.close()
        self._wake_w.close()

    def __enter__(self) -> ExtractionPool:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *_: object) -> None:
        self.shutdown(cancel=exc_type is not None)

    # -- the monitor thread ----------------------------------------------------------
    def _wake(self) -> None:
        with contextlib.suppress(OSError):
            self._wake_w.send_bytes(b"w")

    def _monitor(self) -> None:
        while True:
            with self._lock:
                self._start_queued()
                if self._closed and not self._queue and not self._running:
                    return
                waits: list[Any] = [self._wake_r]
                for task in self._running:
                    assert task.conn is not None and task.process is not None
                    waits += [task.conn, task.process.sentinel]
                deadlines = [t.deadline for t in self._running if t.deadline]
            timeout = min([_POLL_S, *(d - time.monotonic() for d in deadlines)])
            ready = multiprocessing.connection.wait(waits, timeout=max(0.0, timeout))
            if self._wake_r in ready:
                with contextlib.suppress(EOFError, OSError):
                    while self._wake_r.poll():
                        self._wake_r.recv_bytes()
            with self._lock:
                self._settle(ready)

    def _start_queued(self) -> None:
        while self._queue and len(self._running) < self.workers:
            task = self._queue.popleft()
            if not task.future.set_running_or_notify_cancel():
                continue
            receive, send = self._ctx.Pipe(duplex=False)
            task.process = self._ctx.Process(
                target=_child, args=(send, task.fn, task.args, self.memory_mb), daemon=True)
            try:
                task.process.start()
            except OSError as err:  # no process could be made (out of memory, pids)
                receive.close()
                task.future.set_exception(PdfError(
                    f"{task.label}: no process could be started to read it ({err}).",
                    "Free some memory and run the command again."))
                continue
            finally:
                send.close()
            task.conn = receive
            task.deadline = time.monotonic() + self.timeout_s if self.timeout_s > 0 else 0.0
            self._running.append(task)

    def _settle(self, ready: list[Any]) -> None:
        now = time.monotonic()
        for task in list(self._running):
            assert task.conn is not None and task.process is not None
            if task.conn in ready or task.process.sentinel in ready:
                self._finish(task)
            elif task.deadline and now >= task.deadline:
                self._kill(task)
                self._fail(task, PdfError(
                    f"{task.label}: reading its text took longer than {self.timeout_s:g} s "
                    "(a PDF built to stall readers, or a huge one); it was stopped.",
                    "Raise ingest.extract_timeout_s to allow more time."))

    def _finish(self, task: _Task) -> None:
        assert task.conn is not None and task.process is not None
        message: tuple[str, Any] | None = None
        with contextlib.suppress(EOFError, OSError):
            if task.conn.poll():
                message = task.conn.recv()
        task.process.join(timeout=5)
        if task.process.exitcode is None:
            self._kill(task)
        if message is not None and message[0] == "ok":
            self._close(task)
            task.future.set_result(message[1])
        elif message is not None and message[0] == "error":
            self._fail(task, message[1])
        elif message is not None:
            self._fail(task, PdfError(
                f"{task.label}: reading it needed more than {self.memory_mb} MiB of memory.",
                "Raise ingest.extract_memory_mb to allow more."))
        else:
            self._fail(task, PdfError(
                f"{task.label}: the process reading it crashed (exit code "
                f"{task.process.exitcode}); the PDF is corrupt or built to crash readers.",
                "Repair it (e.g. qpdf in.pdf out.pdf) and ingest it again."))

    def _fail(self, task: _Task, err: BaseException) -> None:
        self._close(task)
        task.future.set_exception(err)

    def _close(self, task: _Task) -> None:
        if task in self._running:
            self._running.remove(task)
        if task.conn is not None:
            task.conn.close()

    @staticmethod
    def _kill(task: _Task) -> None:
        if task.process is not None and task.process.exitcode is None:
            task.process.kill()
            task.process.join(timeout=5)
