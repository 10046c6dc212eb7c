"""Processing off the executor thread: one worker thread with a latest-only slot.

Callbacks :meth:`LatestOnlyWorker.submit` items and return at once. While the worker is busy, a new item replaces
the pending one, which is counted as dropped: the worker always processes the newest input and never falls behind.
Control tasks (:meth:`LatestOnlyWorker.call`: reset, model reload, configuration change) run on the same thread,
before the next item, so they never race with processing.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

T = TypeVar("T")


@dataclass
class WorkerStats:
    """Counters since start: items submitted, processed, dropped (replaced while pending), failed."""

    submitted: int = 0
    processed: int = 0
    dropped: int = 0
    errors: int = 0
    last_duration_s: float = 0.0


class LatestOnlyWorker(Generic[T]):
    """Run ``process(item)`` on a daemon thread for the newest submitted item.

    ``on_error(exc, item)`` is called (on the worker thread) when ``process`` raises; the worker keeps running.
    """

    def __init__(self, process: Callable[[T], Any], on_error: Callable[[BaseException, T], Any] | None = None,
                 name: str = "casmtr_vo_worker") -> None:
        self._process = process
        self._on_error = on_error
        self._cond = threading.Condition()
        self._pending: T | None = None
        self._has_pending = False
        self._tasks: deque[tuple[Callable[[], Any], Future]] = deque()
        self._stop = False
        self._busy = False
        self.stats = WorkerStats()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def submit(self, item: T) -> bool:
        """Hand ``item`` to the worker; returns True when it replaced a pending item (one more dropped)."""
        with self._cond:
            if self._stop:
                raise RuntimeError("worker stopped")
            replaced = self._has_pending
            self._pending, self._has_pending = item, True
            self.stats.submitted += 1
            if replaced:
                self.stats.dropped += 1
            self._cond.notify()
        return replaced

    def call(self, fn: Callable[[], Any]) -> Future:
        """Run ``fn`` on the worker thread before the next item; the Future carries its result or exception."""
        future: Future = Future()
        with self._cond:
            if self._stop:
                future.set_exception(RuntimeError("worker stopped"))
                return future
            self._tasks.append((fn, future))
            self._cond.notify()
        return future

    def discard_pending(self) -> bool:
        """Drop the pending item (not counted as dropped); returns whether there was one."""
        with self._cond:
            had = self._has_pending
            self._pending, self._has_pending = None, False
            return had

    @property
    def busy(self) -> bool:
        return self._busy

    def idle(self) -> bool:
        """No item pending, no task queued, nothing running."""
        with self._cond:
            return not (self._busy or self._has_pending or self._tasks)

    def wait_idle(self, timeout: float | None = None) -> bool:
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.idle():
            if deadline is not None and time.monotonic() > deadline:
                return False
            time.sleep(0.005)
        return True

    def stop(self, timeout: float | None = 5.0) -> None:
        """Finish the current item, drop the pending one, fail queued tasks, and join the thread."""
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not (self._stop or self._tasks or self._has_pending):
                    self._cond.wait()
                if self._stop:
                    tasks, self._tasks = list(self._tasks), deque()
                    break
                task = self._tasks.popleft() if self._tasks else None
                if task is None:
                    item, self._pending, self._has_pending = self._pending, None, False
                self._busy = True
            try:
                if task is not None:
                    self._run_task(*task)
                else:
                    self._run_item(item)
            finally:
                with self._cond:
                    self._busy = False
        for _, future in tasks:
            future.set_exception(RuntimeError("worker stopped"))

    @staticmethod
    def _run_task(fn: Callable[[], Any], future: Future) -> None:
        if not future.set_running_or_notify_cancel():
            return
        try:
            future.set_result(fn())
        except BaseException as exc:  # handed to the caller through the future
            future.set_exception(exc)

    def _run_item(self, item: T) -> None:
        start = time.perf_counter()
        try:
            self._process(item)
        except Exception as exc:
            self.stats.errors += 1
            if self._on_error is not None:
                with contextlib.suppress(Exception):  # an error handler must not kill the worker
                    self._on_error(exc, item)
        finally:
            self.stats.processed += 1
            self.stats.last_duration_s = time.perf_counter() - start
