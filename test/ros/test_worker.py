"""The latest-only worker: submit never blocks, the newest item wins, control tasks run between items."""

from __future__ import annotations

import threading
import time

import pytest

from casmtr_ros.ros.worker import LatestOnlyWorker


def test_latest_only_slot_counts_dropped_items() -> None:
    gate = threading.Event()
    started = threading.Event()
    done: list[int] = []

    def process(item: int) -> None:
        started.set()
        gate.wait(5)
        done.append(item)

    worker: LatestOnlyWorker[int] = LatestOnlyWorker(process)
    try:
        worker.submit(0)
        assert started.wait(5)
        t0 = time.perf_counter()
        replaced = [worker.submit(k) for k in range(1, 6)]  # 0 is running: 1..4 are replaced by 5
        assert time.perf_counter() - t0 < 0.5  # submit never waits for the worker
        assert replaced == [False, True, True, True, True]
        gate.set()
        assert worker.wait_idle(5)
        assert done == [0, 5]
        assert (worker.stats.submitted, worker.stats.processed, worker.stats.dropped) == (6, 2, 4)
    finally:
        gate.set()
        worker.stop()


def test_tasks_run_on_the_worker_thread_before_the_next_item() -> None:
    order: list[str] = []
    gate = threading.Event()
    worker: LatestOnlyWorker[str] = LatestOnlyWorker(lambda item: (gate.wait(5), order.append(item)))
    try:
        worker.submit("a")
        time.sleep(0.05)
        worker.submit("b")
        future = worker.call(lambda: (order.append("task"), threading.current_thread().name)[1])
        gate.set()
        assert future.result(5) == "casmtr_vo_worker"
        assert worker.wait_idle(5)
        assert order == ["a", "task", "b"]
    finally:
        worker.stop()


def test_errors_are_reported_and_the_worker_survives() -> None:
    errors: list[tuple[str, int]] = []

    def process(item: int) -> None:
        if item == 1:
            raise ValueError("bad frame")

    worker: LatestOnlyWorker[int] = LatestOnlyWorker(process, on_error=lambda e, item: errors.append((str(e), item)))
    try:
        worker.submit(1)
        assert worker.wait_idle(5)
        worker.submit(2)
        assert worker.wait_idle(5)
        assert errors == [("bad frame", 1)]
        assert (worker.stats.processed, worker.stats.errors) == (2, 1)
        failing = worker.call(lambda: 1 / 0)
        with pytest.raises(ZeroDivisionError):
            failing.result(5)
        assert worker.call(lambda: "alive").result(5) == "alive"
    finally:
        worker.stop()


def test_stop_fails_queued_tasks_and_refuses_new_items() -> None:
    worker: LatestOnlyWorker[int] = LatestOnlyWorker(lambda item: None)
    worker.stop()
    with pytest.raises(RuntimeError, match="stopped"):
        worker.submit(1)
    with pytest.raises(RuntimeError, match="stopped"):
        worker.call(lambda: None).result(1)
