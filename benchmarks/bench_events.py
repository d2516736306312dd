"""What the operations event log adds to one operation (target: under 0.2 ms).

    .venv/bin/pytest benchmarks/bench_events.py

Side by side in one run: a trivial engine-style method with the ``recorded`` wrapper and a live
``EventLog`` on a real store, the same method with no log (the wrapper's pass-through), and the bare
method. The difference of medians is the cost per operation; the writer thread's batched inserts run
off the operation's path (and share the machine, so they are inside these figures).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from engine.crypto import KeyRing
from engine.events import EventLog, recorded
from engine.store.store import Store


class Op:
    def __init__(self, events: EventLog | None) -> None:
        self.events = events

    @recorded("identify")
    def identify(self, samples: list[Any] | None = None, *, partition: str | None = None) -> Any:
        return _RESULT

    def bare(self, samples: list[Any] | None = None, *, partition: str | None = None) -> Any:
        return _RESULT


class _Result:
    def __init__(self) -> None:
        self.candidates: list[Any] = []
        self.samples: list[Any] = []


_RESULT = _Result()


@pytest.fixture(scope="module")
def log(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EventLog]:
    d: Path = tmp_path_factory.mktemp("events")
    store = Store(d / "nasname.db", KeyRing.generate())
    events = EventLog(store.db, flush_interval=0.2, max_queue=1_000_000)
    yield events
    events.close()
    store.close()


def test_operation_with_event_log(benchmark: Any, log: EventLog) -> None:
    op = Op(log)
    benchmark(op.identify, None, partition="camp-a")
    assert log.dropped == 0


def test_operation_wrapper_without_log(benchmark: Any) -> None:
    benchmark(Op(None).identify, None, partition="camp-a")


def test_operation_bare(benchmark: Any) -> None:
    benchmark(Op(None).bare, None, partition="camp-a")
