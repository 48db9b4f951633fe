"""``flux.job.FluxExecutor``: submit jobspecs, get ``concurrent.futures`` futures back.

Interface of flux-core's executor (so Parsl, PSI/J, executorlib run unmodified):

- :class:`FluxExecutor` ``(threads=1, thread_name_prefix="", poll_interval=0.1,
  handle_args=(), handle_kwargs={})``; ``submit(jobspec, **submit_kwargs)`` takes the
  arguments of :func:`flux.job.submit` without the handle; ``attach(jobid)`` follows a
  job submitted elsewhere; ``shutdown(wait=True, *, cancel_futures=False)``; a context
  manager.
- :class:`FluxExecutorFuture`: its result is the job's exit code (the highest task exit
  status, or ``-signum`` when a task was killed by a signal); a fatal job exception
  (severity 0) sets a :class:`~flux.job.JobException` instead; an invalid jobspec or a
  rejected submission sets the ``OSError`` of the submission.  ``jobid(timeout)``,
  ``add_jobid_callback(fn)``, ``add_event_callback(name, fn)`` for any name in
  ``EVENTS``.

Each worker thread owns its own :class:`flux.Flux` handle (a handle is not thread-safe)
and runs that handle's reactor.  Callers hand work to a thread through a queue and a
wake-up pipe watched by the reactor, so a submission is sent at once instead of at
the next ``poll_interval`` tick (the argument is accepted for compatibility).  Each
job's progress comes from ``job-info.eventlog-watch`` on its primary eventlog.

``FluxExecutorFuture.cancel()`` follows ``concurrent.futures`` (and flux-core): it only
cancels a future the executor has not taken up yet; once the job is submitted it
returns False and the job runs on.  To stop a submitted job, cancel the job itself:
``flux.job.cancel_async(handle, future.jobid())`` (as PSI/J does).
"""

from __future__ import annotations

import collections
import concurrent.futures
import errno
import itertools
import logging
import os
import threading
import weakref
from collections.abc import Callable, Iterable
from typing import Any

import flux
from flux.job.event import MAIN_EVENTS, EventLogEvent, JobException, event_watch_async
from flux.job.JobID import JobID
from flux.job.submit import submit_async, submit_get_id

__all__ = ["FluxExecutor", "FluxExecutorFuture"]

_LOG = logging.getLogger(__name__)


def _jobid_of(value: Any) -> JobID:
    """A JobID from an int, a JobID, or any string form (f58, decimal, hex...)."""
    if isinstance(value, bytes):
        value = value.decode()
    try:
        return JobID(value)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"invalid job id {value!r}: {exc}") from None


class FluxExecutorFuture(concurrent.futures.Future):
    """A ``concurrent.futures.Future`` for one Flux job, with its job id and events.

    Callbacks (job id, event and done callbacks) run in the executor's thread; an
    exception they raise is logged and ignored.  Waiting on the future from such a
    callback (before it is done) would deadlock, so it raises RuntimeError instead.
    """

    #: Names accepted by :meth:`add_event_callback` (the primary eventlog's events).
    EVENTS = MAIN_EVENTS

    def __init__(self, owning_thread_id: int | None, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._owner = owning_thread_id
        self._jobid_cond = threading.Condition()
        self._jobid: JobID | None = None
        self._jobid_set = False
        self._jobid_exc: BaseException | None = None
        self._jobid_callbacks: list[Callable] = []
        self._event_lock = threading.RLock()
        self._events_seen: dict[str, list[EventLogEvent]] = collections.defaultdict(list)
        self._event_callbacks: dict[str, list[Callable]] = collections.defaultdict(list)

    # ------------------------------------------------------------------ job id
    def _set_jobid(self, jobid: Any, exc: BaseException | None = None) -> None:
        """Record the job id (or the exception jobid() should raise); for executors
        and tests.  Runs the job id callbacks."""
        with self._jobid_cond:
            if self._jobid_set:
                raise concurrent.futures.InvalidStateError("the jobid is already set")
            self._jobid = jobid
            self._jobid_exc = exc
            self._jobid_set = True
            callbacks, self._jobid_callbacks = self._jobid_callbacks, []
            self._jobid_cond.notify_all()
        for cb in callbacks:
            self._invoke_flux_callback(cb)

    def jobid(self, timeout: float | None = None) -> JobID:
        """The job id, waiting up to ``timeout`` seconds (None: no limit).

        Raises ``concurrent.futures.TimeoutError`` when it is not known in time,
        ``CancelledError`` if the future was cancelled before submission, and
        RuntimeError if the job could not be submitted.
        """
        with self._jobid_cond:
            if not self._jobid_cond.wait_for(lambda: self._jobid_set, timeout):
                raise concurrent.futures.TimeoutError("the job id is not available yet")
        if self._jobid_exc is not None:
            raise self._jobid_exc
        return self._jobid

    def add_jobid_callback(self, callback: Callable[[FluxExecutorFuture], Any]) -> FluxExecutorFuture:
        """Call ``callback(future)`` once the job id is known (at once if it is)."""
        with self._jobid_cond:
            if not self._jobid_set:
                self._jobid_callbacks.append(callback)
                return self
        self._invoke_flux_callback(callback)
        return self

    # ------------------------------------------------------------------ events
    def add_event_callback(self, event: str,
                           callback: Callable[[FluxExecutorFuture, EventLogEvent], Any]
                           ) -> FluxExecutorFuture:
        """Call ``callback(future, event)`` each time the job posts ``event``; events
        already posted are replayed at once.  ``event`` must be one of ``EVENTS``."""
        if event not in self.EVENTS:
            raise ValueError(f"unknown job event '{event}' (valid: {', '.join(sorted(self.EVENTS))})")
        with self._event_lock:
            self._event_callbacks[event].append(callback)
            seen = list(self._events_seen[event])
        for entry in seen:
            self._invoke_flux_callback(callback, entry)
        return self

    def _set_event(self, entry: EventLogEvent) -> None:
        """Record an event and run its callbacks; for executors and tests."""
        if entry.name not in self.EVENTS:
            raise ValueError(f"unknown job event '{entry.name}'")
        with self._event_lock:
            self._events_seen[entry.name].append(entry)
            callbacks = list(self._event_callbacks[entry.name])
        for cb in callbacks:
            self._invoke_flux_callback(cb, entry)

    def _invoke_flux_callback(self, callback: Callable, *args: Any) -> None:
        try:
            callback(self, *args)
        except Exception:  # a user callback must not break the executor thread
            _LOG.exception("exception calling callback for %r", self)

    # ------------------------------------------------- concurrent.futures.Future
    def add_done_callback(self, fn: Callable[[FluxExecutorFuture], Any]) -> FluxExecutorFuture:  # type: ignore[override]
        super().add_done_callback(fn)
        return self

    def _check_not_owner(self) -> None:
        if not self.done() and threading.get_ident() == self._owner:
            raise RuntimeError("Cannot wait for future from inside callback")

    def result(self, timeout: float | None = None) -> Any:
        self._check_not_owner()
        return super().result(timeout)

    def exception(self, timeout: float | None = None) -> BaseException | None:
        self._check_not_owner()
        return super().exception(timeout)

    def set_exception(self, exception: BaseException | None) -> None:
        # a future that fails before it has a job id must not leave jobid() waiting
        with self._jobid_cond:
            unset = not self._jobid_set
        if unset:
            self._set_jobid(None, RuntimeError(f"job could not be submitted due to {exception}"))
        super().set_exception(exception)

    def cancel(self) -> bool:
        """Cancel the future if the executor has not taken it up yet (True); a future
        whose job is submitted cannot be cancelled (False: the job runs on)."""
        if self.cancelled():
            return True
        if not super().cancel():
            return False
        with self._jobid_cond:
            unset = not self._jobid_set
        if unset:  # jobid() waiters must not wait forever
            self._set_jobid(None, concurrent.futures.CancelledError())
        return True


class _Package:
    """One piece of work for an executor thread."""

    __slots__ = ("kind", "args", "kwargs", "future")

    def __init__(self, kind: str, args: tuple, kwargs: dict, future: FluxExecutorFuture):
        self.kind = kind  # "submit" or "attach"
        self.args = args
        self.kwargs = kwargs
        self.future = future


class _ExecutorThread(threading.Thread):
    """Submits jobs and follows their eventlogs on its own handle and reactor."""

    def __init__(self, shutdown_event: threading.Event, broken_event: threading.Event,
                 handle_args: Iterable, handle_kwargs: dict, name: str):
        super().__init__(name=name, daemon=True)
        self._shutdown = shutdown_event
        self._broken = broken_event
        # Connect here so that a bad URI fails FluxExecutor() in the caller's thread.
        self._handle = flux.Flux(*handle_args, **handle_kwargs)
        self.packages: collections.deque[_Package] = collections.deque()
        self._running: set[FluxExecutorFuture] = set()  # submitted, eventlog not ended
        self._rfd, self._wfd = os.pipe()
        os.set_blocking(self._rfd, False)
        self._wake_lock = threading.Lock()
        self._wake_pending = False
        self._done = False

    # ----------------------------------------------------- called by any thread
    def wake(self) -> None:
        """Make the reactor look at the queues (one byte in flight at most)."""
        with self._wake_lock:
            if self._wake_pending or self._done:
                return
            self._wake_pending = True
            try:
                os.write(self._wfd, b"w")
            except OSError:  # the thread has ended and closed the pipe
                pass

    # ---------------------------------------------------------- thread body
    def run(self) -> None:
        try:
            watcher = self._handle.fd_watcher_create(self._rfd, self._on_wake)
            watcher.start()
            self._work()
            if not self._finished():
                self._handle.reactor_run()
        except BaseException as exc:  # noqa: BLE001 - every waiter must learn of it
            self._broken.set()
            self._fail_everything(exc)
            _LOG.error("FluxExecutor thread %s failed: %s", self.name, exc)
        finally:
            with self._wake_lock:
                self._done = True
                os.close(self._wfd)
            os.close(self._rfd)
            self._handle.close()
            # anything queued after the failure still gets an answer
            self._fail_everything(RuntimeError("the FluxExecutor thread has exited"))

    def _fail_everything(self, exc: BaseException) -> None:
        pending = list(self._running)
        self._running.clear()
        while self.packages:
            pending.append(self.packages.popleft().future)
        for fut in pending:
            if not fut.done() and (fut.running() or fut.set_running_or_notify_cancel()):
                fut.set_exception(exc)

    def _finished(self) -> bool:
        return self._shutdown.is_set() and not self.packages and not self._running

    def _on_wake(self, handle: Any, watcher: Any, fd: int, revents: int, args: Any) -> None:
        with self._wake_lock:
            self._wake_pending = False
            try:
                while os.read(self._rfd, 4096):
                    pass
            except BlockingIOError:
                pass
        self._work()

    def _work(self) -> None:
        """Take up queued submissions and attachments."""
        h = self._handle
        while self.packages:
            pkg = self.packages.popleft()
            fut = pkg.future
            if not fut.set_running_or_notify_cancel():
                continue  # cancelled while queued
            try:
                if pkg.kind == "submit":
                    submit_async(h, *pkg.args, **pkg.kwargs).then(self._on_submitted, fut)
                else:
                    self._watch(fut)
            except Exception as exc:  # bad jobspec or arguments: this job only
                fut.set_exception(exc)
                continue
            self._running.add(fut)
        self._check_exit()

    def _check_exit(self) -> None:
        if self._finished():
            self._handle.reactor_stop()

    def _watch(self, fut: FluxExecutorFuture) -> None:
        event_watch_async(self._handle, fut._jobid).then(self._on_event, fut)

    def _on_submitted(self, rpc: Any, fut: FluxExecutorFuture) -> None:
        try:
            jobid = submit_get_id(rpc)
        except Exception as exc:
            self._running.discard(fut)
            fut.set_exception(exc)
            self._check_exit()
            return
        fut._set_jobid(jobid)
        self._watch(fut)

    def _on_event(self, watch: Any, fut: FluxExecutorFuture) -> None:
        try:
            event = watch.get_event()
        except OSError as exc:
            if exc.errno == errno.ENOENT:
                exc = ValueError(f"job ID {fut._jobid} does not match any job")
            self._end(fut, exc)
            return
        except Exception as exc:
            self._end(fut, exc)
            return
        if event is None:  # the eventlog is complete
            watch.reset()  # drop the final ENODATA so queued wake-ups find nothing
            self._end(fut, RuntimeError(f"job {fut._jobid} eventlog ended without a result"))
            return
        if event.name in fut.EVENTS:
            fut._set_event(event)
        if fut.done():
            return
        if event.name == "finish":
            status = event.context.get("status", 0)
            if os.WIFSIGNALED(status):
                fut.set_result(-os.WTERMSIG(status))
            elif os.WIFEXITED(status):
                fut.set_result(os.WEXITSTATUS(status))
            else:
                fut.set_exception(ValueError(f"unexpected wait status {status}"))
        elif event.name == "exception" and event.context.get("severity") == 0:
            fut.set_exception(JobException(event))

    def _end(self, fut: FluxExecutorFuture, exc: BaseException) -> None:
        """The job's eventlog is over: complete the future if nothing did."""
        self._running.discard(fut)
        if not fut.done():
            fut.set_exception(exc)
        self._check_exit()


class FluxExecutor(concurrent.futures.Executor):
    """Submits jobspecs to Flux and returns a :class:`FluxExecutorFuture` per job.

    :param threads: worker threads (each with its own Flux handle); jobs are dealt to
        them in turn
    :param thread_name_prefix: prefix of the threads' names
    :param poll_interval: accepted for compatibility (work is picked up at once)
    :param handle_args: positional arguments of each thread's ``flux.Flux()``
    :param handle_kwargs: keyword arguments of each thread's ``flux.Flux()``
    """

    _counter = itertools.count().__next__
    #: Names accepted by ``FluxExecutorFuture.add_event_callback``.
    EVENTS = MAIN_EVENTS

    def __init__(self, threads: int = 1, thread_name_prefix: str = "",
                 poll_interval: float = 0.1, handle_args: Iterable = (),
                 handle_kwargs: dict | None = None):
        if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
            raise ValueError(f"the number of threads must be an integer >= 1, not {threads!r}")
        if not isinstance(poll_interval, (int, float)) or poll_interval <= 0:
            raise ValueError(f"poll_interval must be a positive number, not {poll_interval!r}")
        self.poll_interval = float(poll_interval)
        prefix = thread_name_prefix or f"{type(self).__name__}-{self._counter()}"
        self._shutdown_lock = threading.Lock()
        self._shutdown_event = threading.Event()
        self._broken_event = threading.Event()
        self._next = 0
        self._threads: list[_ExecutorThread] = []
        try:
            for i in range(threads):
                self._threads.append(_ExecutorThread(self._shutdown_event, self._broken_event,
                                                     tuple(handle_args), dict(handle_kwargs or {}),
                                                     f"{prefix}-{i}"))
        except BaseException:
            for t in self._threads:
                t._handle.close()
                os.close(t._rfd)
                os.close(t._wfd)
            raise
        for t in self._threads:
            t.start()
        # stop the threads when the executor is collected without shutdown()
        self._finalizer = weakref.finalize(self, _stop_threads, self._shutdown_event,
                                           list(self._threads))

    def submit(self, *args: Any, **kwargs: Any) -> FluxExecutorFuture:  # type: ignore[override]
        """Submit a job; arguments are those of :func:`flux.job.submit` after the handle
        (``jobspec, urgency=16, waitable=False, debug=False, pre_signed=False,
        novalidate=False``), by position or keyword.  A bad jobspec or argument is set
        on the future.  Raises RuntimeError after shutdown."""
        return self._create_future("submit", args, kwargs)

    def attach(self, jobid: Any) -> FluxExecutorFuture:
        """A future for an existing job (any id form); it behaves as a submitted one.
        If no such job exists the future gets a ValueError."""
        jid = _jobid_of(jobid)
        return self._create_future("attach", (), {}, jid)

    def _create_future(self, kind: str, args: tuple, kwargs: dict,
                       jobid: JobID | None = None) -> FluxExecutorFuture:
        if self._broken_event.is_set():
            raise RuntimeError("the FluxExecutor is broken: new futures cannot be scheduled")
        with self._shutdown_lock:
            if self._shutdown_event.is_set():
                raise RuntimeError("cannot schedule new futures after shutdown")
            thread = self._threads[self._next]
            self._next = (self._next + 1) % len(self._threads)
            fut = FluxExecutorFuture(thread.ident)
            if jobid is not None:
                fut._set_jobid(jobid)
            thread.packages.append(_Package(kind, args, kwargs, fut))
        thread.wake()
        return fut

    def map(self, *args: Any, **kwargs: Any):  # noqa: D102 - not meaningful for jobspecs
        raise NotImplementedError("FluxExecutor consumes jobspecs: use submit(), not map()")

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Refuse new work; with ``cancel_futures`` cancel futures not yet taken up by
        a thread; with ``wait`` return once every submitted job's future is done.
        Safe to call more than once."""
        with self._shutdown_lock:
            self._shutdown_event.set()
        if cancel_futures:
            for t in self._threads:
                while True:
                    try:
                        pkg = t.packages.popleft()
                    except IndexError:
                        break
                    pkg.future.cancel()
                    pkg.future.set_running_or_notify_cancel()
        for t in self._threads:
            t.wake()
        if wait:
            for t in self._threads:
                if t is not threading.current_thread():
                    t.join()

    def __enter__(self) -> FluxExecutor:
        return self

    def __exit__(self, exc_type: Any, exc_val: Any, exc_tb: Any) -> bool:
        self.shutdown(wait=True)
        return False


def _stop_threads(event: threading.Event, threads: list[_ExecutorThread]) -> None:
    """weakref finalizer: a plain function, so it holds no reference to the executor."""
    event.set()
    for t in threads:
        t.wake()
    for t in threads:
        if t is not threading.current_thread():
            t.join()
