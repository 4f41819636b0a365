"""Where candidates run: every local core (one process per candidate), in this process, or Ray tasks.

An executor opens a :class:`Session` per phase, bound to one :class:`~autoscaler.tune.evaluate.SimContext`:
the context (with its trace) is shipped once (a process pool's initializer, Ray's object store), then
:meth:`Session.map` runs a batch of tasks and returns their outcomes *in the order given*, whatever
order they finish in. With the outcomes of a batch told to the sampler in that order, a search gives
the same result on every executor for the same seed (:mod:`autoscaler.tune.search`).

* :class:`LocalExecutor` ``workers=N``: a pool of N spawned processes (``spawn``: no state inherited
  from the parent, the same start on every OS), started once; a session's context is written to a
  private file each worker loads once; ``workers=1`` runs in this process.
* :class:`RayExecutor`: ``ray.remote`` tasks of one CPU each on the cluster at ``address`` (``auto``:
  the one this machine belongs to), or on the Ray instance this process already started. The workers
  need this package installed (the same version), as for any Ray task.
"""

from __future__ import annotations

import multiprocessing
import os
import pickle
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from contextlib import contextmanager
from types import TracebackType
from typing import Any, Protocol, TextIO

from autoscaler.tune.evaluate import Outcome, SimContext, Task, evaluate

__all__ = ["Executor", "LocalExecutor", "Progress", "RayExecutor", "Session", "describe"]

OnDone = Callable[[int, int], None]  # (finished, total)


class Session(Protocol):
    def map(self, tasks: Sequence[Task], on_done: OnDone | None = None) -> list[Outcome]:
        """Run every task; outcomes in the order of ``tasks``."""
        ...


class Executor(Protocol):
    name: str

    @property
    def workers(self) -> int: ...

    def session(self, context: SimContext) -> Any:
        """A context manager yielding a :class:`Session` bound to ``context``."""
        ...


class Progress:
    """One progress line on ``stream`` (stderr): rewritten in place on a terminal as candidates finish;
    elsewhere (a log, a CI job) one line per finished batch."""

    def __init__(self, stream: TextIO | None, label: str, total: int) -> None:
        self.stream, self.label, self.total = stream, label, total
        self.tty = bool(stream is not None and stream.isatty())
        self.started = time.perf_counter()
        self.extra = ""

    def _text(self, done: int) -> str:
        elapsed = time.perf_counter() - self.started
        rate = done / elapsed if elapsed > 0 else 0.0
        return f"{self.label}: {done}/{self.total} candidates, {elapsed:.0f} s, {rate:.2f}/s{self.extra}"

    def update(self, done: int) -> None:
        """A candidate finished (``done`` in all)."""
        if self.stream is not None and self.tty:
            self.stream.write("\r" + self._text(done)[:160].ljust(100))
            self.stream.flush()

    def batch(self, done: int, extra: str = "") -> None:
        """A batch finished and was told to the sampler."""
        self.extra = extra
        if self.stream is None:
            return
        if self.tty:
            self.stream.write("\r" + self._text(done)[:160].ljust(100) + ("\n" if done >= self.total else ""))
        else:
            self.stream.write(self._text(done) + "\n")
        self.stream.flush()


# ------------------------------------------------------------------------------------------- local


_WORKER_CONTEXT: tuple[str, SimContext] | None = None  # (the file it came from, the context)


def _run_from_file(context_file: str, task: Task) -> Outcome:
    """In a pool worker: load the session's context once (it is the same file for the whole session)."""
    global _WORKER_CONTEXT
    if _WORKER_CONTEXT is None or _WORKER_CONTEXT[0] != context_file:
        with open(context_file, "rb") as stream:
            _WORKER_CONTEXT = (context_file, pickle.load(stream))
    return evaluate(_WORKER_CONTEXT[1], task)


class _InProcess:
    def __init__(self, context: SimContext) -> None:
        self.context = context

    def map(self, tasks: Sequence[Task], on_done: OnDone | None = None) -> list[Outcome]:
        out = []
        for i, task in enumerate(tasks):
            out.append(evaluate(self.context, task))
            if on_done is not None:
                on_done(i + 1, len(tasks))
        return out


class _Pool:
    def __init__(self, pool: ProcessPoolExecutor, context_file: str) -> None:
        self.pool, self.context_file = pool, context_file

    def map(self, tasks: Sequence[Task], on_done: OnDone | None = None) -> list[Outcome]:
        futures = {self.pool.submit(_run_from_file, self.context_file, task): i for i, task in enumerate(tasks)}
        out: list[Outcome | None] = [None] * len(tasks)
        for finished, future in enumerate(as_completed(futures), start=1):
            out[futures[future]] = future.result()
            if on_done is not None:
                on_done(finished, len(tasks))
        return [o for o in out if o is not None]


class LocalExecutor:
    """Every local core by default: one process per candidate, ``workers`` at a time.

    The pool lives as long as the executor (``with LocalExecutor() as executor:``), so its processes
    start once; each session writes its context to a private file that each worker reads once.
    """

    name = "local"

    def __init__(self, workers: int | None = None) -> None:
        self._workers = max(1, workers if workers is not None else (os.cpu_count() or 1))
        self._pool: ProcessPoolExecutor | None = None
        self._dir: tempfile.TemporaryDirectory[str] | None = None
        self._sessions = 0

    @property
    def workers(self) -> int:
        return self._workers

    def __enter__(self) -> LocalExecutor:
        if self._workers > 1:
            self._pool = ProcessPoolExecutor(max_workers=self._workers,
                                             mp_context=multiprocessing.get_context("spawn"))
            self._dir = tempfile.TemporaryDirectory(prefix="tune-contexts-")
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        if self._dir is not None:
            self._dir.cleanup()
            self._dir = None

    @contextmanager
    def session(self, context: SimContext) -> Iterator[Session]:
        if self._workers == 1:
            yield _InProcess(context)
            return
        if self._pool is None or self._dir is None:
            raise RuntimeError("use LocalExecutor as a context manager")
        self._sessions += 1
        path = os.path.join(self._dir.name, f"context-{self._sessions}.pickle")
        with open(path, "wb") as stream:
            pickle.dump(context, stream, protocol=pickle.HIGHEST_PROTOCOL)
        try:
            yield _Pool(self._pool, path)
        finally:
            os.unlink(path)


# --------------------------------------------------------------------------------------------- Ray


def _evaluate_remote(context: SimContext, task: Task) -> Outcome:
    return evaluate(context, task)


class _RaySession:
    def __init__(self, ray: Any, context_ref: Any) -> None:
        self.ray, self.context_ref = ray, context_ref
        self.remote = ray.remote(num_cpus=1, max_retries=1)(_evaluate_remote)

    def map(self, tasks: Sequence[Task], on_done: OnDone | None = None) -> list[Outcome]:
        refs = [self.remote.remote(self.context_ref, task) for task in tasks]
        pending = list(refs)
        finished = 0
        while pending:
            ready, pending = self.ray.wait(pending, num_returns=1)
            finished += len(ready)
            if on_done is not None:
                on_done(finished, len(tasks))
        outcomes: list[Outcome] = self.ray.get(refs)
        return outcomes


class RayExecutor:
    """The same candidates as Ray tasks. Connects to ``address`` (``auto``: the local machine's
    cluster) unless this process already runs Ray; disconnects on exit only if it connected."""

    name = "ray"

    def __init__(self, address: str | None = "auto") -> None:
        self.address = address
        self._started = False
        self._ray: Any = None

    def __enter__(self) -> RayExecutor:
        try:
            import ray
        except ImportError:
            from autoscaler.tune.space import TuningError

            raise TuningError("--ray-address: the ray package is not installed "
                              "(pip install 'inference-autoscaler[tune]')") from None
        if not ray.is_initialized():
            try:
                ray.init(address=self.address, log_to_driver=False)
            except (ConnectionError, RuntimeError, ValueError) as exc:
                from autoscaler.tune.space import TuningError

                raise TuningError(f"--ray-address {self.address}: cannot connect to a Ray cluster: {exc}") from None
            self._started = True
        self._ray = ray
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        if self._started and self._ray is not None:
            self._ray.shutdown()
            self._started = False

    @property
    def workers(self) -> int:
        if self._ray is None:
            return 0
        return int(self._ray.cluster_resources().get("CPU", 0))

    @contextmanager
    def session(self, context: SimContext) -> Iterator[Session]:
        if self._ray is None:
            raise RuntimeError("use RayExecutor as a context manager")
        ref = self._ray.put(context)
        try:
            yield _RaySession(self._ray, ref)
        finally:
            del ref


def describe(executor: Executor) -> str:
    """``2 local processes``, ``in process``, ``4 Ray CPUs``: for progress lines and reports."""
    if executor.name == "ray":
        return f"{executor.workers} Ray CPUs"
    return "in process" if executor.workers == 1 else f"{executor.workers} local processes"
