"""Erlang/OTP supervision of trio tasks.

A `Supervisor` runs children (async functions following trio's `task_status` protocol) in
its own nursery, each inside its own cancel scope, and restarts them when they end according
to their `Restart` type and the supervisor's `Strategy`. Too many restarts in too short a
time (`RestartIntensity`) make it stop everything and raise `SupervisorGaveUp`, so that its
parent, typically another supervisor, decides what happens next.

Nothing here knows about actors, nodes or machine learning.
"""

from __future__ import annotations

import collections
import enum
import functools
import inspect
import math
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Literal

import attrs
import structlog
import trio

from .errors import SupervisorGaveUp

__all__ = [
    "ChildSpec",
    "EventKind",
    "Restart",
    "RestartIntensity",
    "Strategy",
    "Supervisor",
    "SupervisorEvent",
]

_log = structlog.get_logger()


class Strategy(enum.StrEnum):
    """Which children a supervisor restarts when one of them has to be restarted."""

    ONE_FOR_ONE = "one_for_one"
    ONE_FOR_ALL = "one_for_all"
    REST_FOR_ONE = "rest_for_one"


class Restart(enum.StrEnum):
    """When a child that ended is started again."""

    PERMANENT = "permanent"
    TRANSIENT = "transient"
    TEMPORARY = "temporary"


EventKind = Literal[
    "child_started",
    "child_exited",
    "child_crashed",
    "child_restarted",
    "child_stopped",
    "supervisor_gave_up",
]


def _non_negative_int(_: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError(f"{attribute.name} must be an integer >= 0, got {value!r}")


def _finite_seconds(*, positive: bool) -> Callable[[object, attrs.Attribute[Any], object], None]:
    bound = "> 0" if positive else ">= 0"

    def check(_: object, attribute: attrs.Attribute[Any], value: object) -> None:
        ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
        if not ok or value < 0 or (positive and value == 0):  # type: ignore[operator]
            raise ValueError(
                f"{attribute.name} must be a finite number of seconds {bound}, got {value!r}"
            )

    return check


def _child_name(_: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if not isinstance(value, str) or not value:
        raise ValueError(f"child name must be a non-empty string, got {value!r}")


@attrs.frozen
class ChildSpec:
    """How to run, restart and stop one child.

    Args:
        name: Unique among the supervisor's children.
        start: ``async fn(*, task_status)`` that runs the child until it ends and calls
            ``task_status.started(value)`` once it is ready; ``value`` becomes
            `Supervisor.started_value`. Raising (before or after ``started``) is a crash;
            returning after ``started`` is a normal exit.
        restart: When the child is started again after it ended.
        shutdown_timeout_s: How long a graceful stop may take before the child is cancelled.
        stop: Graceful-stop request, sync or async, called once per stop; the child should
            then return. ``None`` cancels the child at once.
    """

    name: str = attrs.field(validator=_child_name)
    start: Callable[..., Awaitable[object]]
    restart: Restart = attrs.field(default=Restart.PERMANENT, converter=Restart)
    shutdown_timeout_s: float = attrs.field(default=5.0, validator=_finite_seconds(positive=False))
    stop: Callable[[], object] | None = None


@attrs.define(eq=False)
class RestartIntensity:
    """Counts restarts in a sliding window: more than ``max_restarts`` within ``within_s``
    seconds means the restarts are not helping.

    Reusable outside `Supervisor` (the launcher supervises node processes with it); pass
    another ``clock`` (e.g. ``time.monotonic``) outside trio.
    """

    max_restarts: int = attrs.field(validator=_non_negative_int)
    within_s: float = attrs.field(validator=_finite_seconds(positive=True))
    clock: Callable[[], float] = trio.current_time
    _stamps: collections.deque[float] = attrs.field(init=False, factory=collections.deque)

    @property
    def count(self) -> int:
        """Restarts in the window as of the last `record`."""
        return len(self._stamps)

    def record(self) -> bool:
        """Record a restart now.

        Returns:
            True if the intensity is exceeded: more than ``max_restarts`` restarts, this one
            included, within the last ``within_s`` seconds.
        """
        now = self.clock()
        self._stamps.append(now)
        while now - self._stamps[0] >= self.within_s:
            self._stamps.popleft()
        return len(self._stamps) > self.max_restarts


@attrs.frozen
class SupervisorEvent:
    """Something that happened to a child, passed to ``Supervisor.on_event``.

    ``restarts`` is the child's total restarts so far; for ``supervisor_gave_up`` it is the
    number of restarts within the intensity window.
    """

    supervisor: str
    kind: EventKind
    child: str
    error: BaseException | None
    restarts: int


_LEVELS = {"child_crashed": "warning", "supervisor_gave_up": "error"}


@attrs.define(eq=False)
class _Run:
    """One incarnation of a child."""

    spec: ChildSpec
    scope: trio.CancelScope = attrs.Factory(trio.CancelScope)
    done: trio.Event = attrs.Factory(trio.Event)
    value: object = None
    started: bool = False
    stopping: bool = False  # the supervisor is stopping it: its end is not a crash or an exit
    stop_requested: bool = False
    error: Exception | None = None


@attrs.define(eq=False)
class _Slot:
    """A child's place in start order, across its incarnations."""

    spec: ChildSpec
    run: _Run | None = None
    attempts: int = 0


@attrs.define(eq=False)
class _Status:
    """The ``task_status`` a child sees: records its started value on the way through."""

    run: _Run
    inner: trio.TaskStatus[object]

    def started(self, value: object = None) -> None:
        self.inner.started(value)
        self.run.value, self.run.started = value, True
        # From now on only its supervisor stops the child, so that an outer cancellation
        # becomes an ordered, graceful shutdown (see Supervisor.run) rather than a stampede.
        self.run.scope.shield = True


@attrs.define(eq=False)
class _Exit:
    run: _Run
    error: Exception | None


@attrs.define(eq=False)
class _Call:
    fn: Callable[[], Awaitable[object]]
    done: trio.Event = attrs.Factory(trio.Event)
    value: object = None
    error: BaseException | None = None


def _to_list(specs: Iterable[ChildSpec]) -> list[ChildSpec]:
    return list(specs)


def _unique_names(_: object, attribute: attrs.Attribute[Any], value: list[ChildSpec]) -> None:
    names = [spec.name for spec in value]
    if dups := sorted({name for name in names if names.count(name) > 1}):
        raise ValueError(f"duplicate child names in {attribute.name}: {', '.join(dups)}")


@attrs.define(eq=False)
class Supervisor:
    """Runs children as trio tasks and restarts them, Erlang/OTP style.

    All bookkeeping happens in the task running `run`, one step at a time: a crash, a
    `start_child` or a `terminate_child` waits while an earlier one (restarts included) is
    still in progress.

    Attributes:
        restarts: Total restarts per child name, over every `run` of this supervisor.
    """

    name: str
    children: list[ChildSpec] = attrs.field(converter=_to_list, validator=_unique_names)
    strategy: Strategy = attrs.field(default=Strategy.ONE_FOR_ONE, converter=Strategy)
    max_restarts: int = attrs.field(default=3, validator=_non_negative_int)
    within_s: float = attrs.field(default=5.0, validator=_finite_seconds(positive=True))
    on_event: Callable[[SupervisorEvent], None] | None = None
    restarts: dict[str, int] = attrs.field(init=False, factory=dict)
    _slots: list[_Slot] = attrs.field(init=False, factory=list, repr=False)
    _live: set[_Run] = attrs.field(init=False, factory=set, repr=False)
    _nursery: trio.Nursery | None = attrs.field(init=False, default=None, repr=False)
    _inbox: trio.MemorySendChannel[_Exit | _Call | None] | None = attrs.field(
        init=False, default=None, repr=False
    )
    _finished: trio.Event = attrs.field(init=False, factory=trio.Event, repr=False)
    _intensity: RestartIntensity | None = attrs.field(init=False, default=None, repr=False)
    _shutting_down: bool = attrs.field(init=False, default=False, repr=False)
    _had_children: bool = attrs.field(init=False, default=False, repr=False)

    async def run(
        self, *, task_status: trio.TaskStatus[Supervisor] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Start the children in order, then supervise them until none is left.

        Calls ``task_status.started(self)`` once every initial child has started (or been
        given up on); a child failing during startup is a crash like any other. Runs again
        from ``children`` if called again after it ended (as a parent supervisor does).
        A supervisor with no initial children waits for `start_child` or `shutdown`.

        Cancelling ``run`` from outside shuts the children down as `shutdown` does: the
        cleanup is shielded but bounded by each child's ``shutdown_timeout_s``.

        Raises:
            SupervisorGaveUp: Restart intensity exceeded; all children were stopped first.
                Raised bare, never inside an ExceptionGroup.
            RuntimeError: ``run`` is already running.
        """
        if self._inbox is not None:
            raise RuntimeError(f"supervisor {self.name!r} is already running")
        send, receive = trio.open_memory_channel[_Exit | _Call | None](math.inf)
        self._inbox, self._finished, self._shutting_down = send, trio.Event(), False
        self._intensity = RestartIntensity(self.max_restarts, self.within_s)
        self._slots = [_Slot(spec) for spec in self.children]
        self._had_children = bool(self._slots)
        for spec in self.children:
            self.restarts.setdefault(spec.name, 0)
        gave_up: SupervisorGaveUp | None = None
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                try:
                    await self._start_pending()
                    task_status.started(self)
                    await self._serve(receive)
                except SupervisorGaveUp as exc:
                    gave_up = exc  # raised after the nursery, so not wrapped in a group
                finally:
                    with trio.CancelScope(shield=True):
                        await self._stop_all()
        finally:
            self._nursery = self._inbox = None
            send.close()
            self._fail_pending(receive)
            self._finished.set()
        if gave_up is not None:
            raise gave_up

    async def start_child(self, spec: ChildSpec) -> object:
        """Start a child after the others (last in start order) and supervise it.

        Waits until the child has started and until the supervisor has finished what it was
        doing before. A startup failure is raised here and the child is not added; it does
        not count towards restart intensity. If the caller is cancelled the child may still
        be started. Must not be called by a child before it has called ``started``.

        Returns:
            The value the child passed to ``task_status.started``.

        Raises:
            ValueError: A child of that name exists.
            RuntimeError: The supervisor is not running or is shutting down.
        """
        return await self._call(functools.partial(self._add, spec))

    async def terminate_child(self, name: str) -> None:
        """Stop a child gracefully (cancelled after its ``shutdown_timeout_s``) and forget it.

        Waits for the stop. The child is not restarted; if it was the last one, `run` returns.

        Raises:
            LookupError: No child of that name.
            RuntimeError: The supervisor is not running or is shutting down.
        """
        await self._call(functools.partial(self._remove, name))

    async def shutdown(self) -> None:
        """Stop all children in reverse start order and make `run` return normally.

        Each child is asked to stop gracefully and cancelled after its
        ``shutdown_timeout_s``; children are stopped one after another, so this takes at most
        the sum of their timeouts once the supervisor has finished its current step. Returns
        once `run` has ended; a no-op if it is not running. Safe to call from a child
        (which is then stopped like the others).
        """
        if self._inbox is None:
            return
        self._shutting_down = True
        self._inbox.send_nowait(None)
        await self._finished.wait()

    def started_value(self, name: str) -> object:
        """The value the running child ``name`` passed to ``task_status.started``."""
        for slot in self._slots:
            if slot.spec.name == name and slot.run is not None and slot.run.started:
                return slot.run.value
        raise LookupError(f"no running child {name!r} in supervisor {self.name!r}")

    def which_children(self) -> list[str]:
        """Names of the children, in start order."""
        return [slot.spec.name for slot in self._slots]

    # -- the supervising task ------------------------------------------------------------

    async def _serve(self, inbox: trio.MemoryReceiveChannel[_Exit | _Call | None]) -> None:
        while not self._shutting_down and (self._slots or not self._had_children):
            item = await inbox.receive()
            if isinstance(item, _Exit):
                await self._on_exit(item.run, item.error)
            elif isinstance(item, _Call):
                await self._answer(item)

    async def _answer(self, call: _Call) -> None:
        try:
            call.value = await call.fn()
        except Exception as exc:
            call.error = exc
        except BaseException:
            call.error = RuntimeError(f"supervisor {self.name!r} stopped")
            raise
        finally:
            call.done.set()

    async def _call(self, fn: Callable[[], Awaitable[object]]) -> object:
        if self._inbox is None:
            raise RuntimeError(f"supervisor {self.name!r} is not running")
        if self._shutting_down:
            raise RuntimeError(f"supervisor {self.name!r} is shutting down")
        call = _Call(fn)
        self._inbox.send_nowait(call)
        await call.done.wait()
        if call.error is not None:
            raise call.error
        return call.value

    def _fail_pending(self, receive: trio.MemoryReceiveChannel[_Exit | _Call | None]) -> None:
        with receive:
            while True:
                try:
                    item = receive.receive_nowait()
                except (trio.WouldBlock, trio.EndOfChannel):
                    return
                if isinstance(item, _Call) and not item.done.is_set():
                    item.error = RuntimeError(f"supervisor {self.name!r} stopped")
                    item.done.set()

    async def _add(self, spec: ChildSpec) -> object:
        if any(slot.spec.name == spec.name for slot in self._slots):
            raise ValueError(f"supervisor {self.name!r} already has a child {spec.name!r}")
        slot = _Slot(spec)
        self._slots.append(slot)
        self.restarts.setdefault(spec.name, 0)
        try:
            run = await self._start(slot)
        except BaseException:
            self._slots.remove(slot)
            raise
        self._had_children = True
        return run.value

    async def _remove(self, name: str) -> None:
        slot = next((slot for slot in self._slots if slot.spec.name == name), None)
        if slot is None:
            raise LookupError(f"no child {name!r} in supervisor {self.name!r}")
        await self._stop(slot)
        self._slots.remove(slot)

    async def _on_exit(self, run: _Run, error: Exception | None) -> None:
        slot = next((slot for slot in self._slots if slot.run is run), None)
        if slot is None or run.stopping:
            return  # stopped by us, or already replaced by a restart
        slot.run = None
        await self._after_exit(slot, error)
        await self._start_pending()

    async def _after_exit(self, slot: _Slot, error: Exception | None) -> None:
        """Forget the child, or count a restart and stop the siblings the strategy names.

        The children left without a run are then (re)started by `_start_pending`.
        """
        restart = slot.spec.restart
        if restart is Restart.TEMPORARY or (restart is Restart.TRANSIENT and error is None):
            self._slots.remove(slot)
            return
        assert self._intensity is not None
        if self._intensity.record():
            count = self._intensity.count
            self._emit("supervisor_gave_up", slot.spec.name, error, restarts=count)
            name, within, most = self.name, self.within_s, self.max_restarts
            raise SupervisorGaveUp(name, slot.spec.name, count, within, most) from error
        index = self._slots.index(slot)
        affected = {
            Strategy.ONE_FOR_ONE: [slot],
            Strategy.ONE_FOR_ALL: self._slots,
            Strategy.REST_FOR_ONE: self._slots[index:],
        }[self.strategy]
        for other in reversed(affected[:]):
            await self._stop(other)
            # OTP: a temporary child stopped because of a sibling is not restarted either
            if other is not slot and other.spec.restart is Restart.TEMPORARY:
                self._slots.remove(other)

    async def _start_pending(self) -> None:
        """Start, in order, every child that has no run; a startup failure is a crash."""
        while not self._shutting_down:
            slot = next((slot for slot in self._slots if slot.run is None), None)
            if slot is None:
                return
            try:
                await self._start(slot)
            except Exception as exc:
                await self._after_exit(slot, exc)

    async def _start(self, slot: _Slot) -> _Run:
        assert self._nursery is not None
        name = slot.spec.name
        slot.attempts += 1
        if slot.attempts > 1:
            self.restarts[name] += 1
        run = slot.run = _Run(slot.spec)
        self._live.add(run)
        try:
            await self._nursery.start(self._child_main, run)
        except BaseException:
            if not run.started:
                slot.run = None
            raise
        self._emit("child_restarted" if slot.attempts > 1 else "child_started", name)
        return run

    async def _child_main(self, run: _Run, *, task_status: trio.TaskStatus[object]) -> None:
        """The task of one child incarnation: reports how it ended instead of raising,
        except for startup failures, which `nursery.start` hands to `_start`."""
        name = run.spec.name
        error: Exception | None = None
        try:
            with run.scope:
                await run.spec.start(task_status=_Status(run, task_status))
            if not run.started:
                error = RuntimeError(
                    f"child {name!r} returned before calling task_status.started()"
                )
        except Exception as exc:
            error = exc
        finally:
            run.done.set()
            self._live.discard(run)
        if run.stopping:
            run.error = error  # reported by _stop as child_stopped
        else:
            self._emit("child_crashed" if error else "child_exited", name, error)
            if run.started and self._inbox is not None:
                self._inbox.send_nowait(_Exit(run, error))
        if error is not None and not run.started:
            raise error

    async def _stop(self, slot: _Slot) -> None:
        """Stop a slot's run gracefully, cancelling it after its shutdown timeout."""
        run = slot.run
        if run is None:
            return
        was_running = not run.done.is_set()
        run.stopping = True
        spec = run.spec
        if spec.stop is not None and was_running:
            with trio.move_on_after(spec.shutdown_timeout_s):
                if await self._request_stop(run):
                    await run.done.wait()
        run.scope.cancel()
        await run.done.wait()
        slot.run = None
        if was_running:
            self._emit("child_stopped", spec.name, run.error)

    async def _request_stop(self, run: _Run) -> bool:
        """Ask a child to stop, once per incarnation; False if the request itself failed."""
        if not run.stop_requested and run.spec.stop is not None:
            run.stop_requested = True
            try:
                result = run.spec.stop()
                if inspect.isawaitable(result):
                    await result
            except Exception as exc:
                fields = {"supervisor": self.name, "child": run.spec.name, "error": repr(exc)}
                _log.warning("child_stop_failed", **fields, exc_info=exc)
                return False
        return True

    async def _stop_all(self) -> None:
        for slot in reversed(self._slots):
            await self._stop(slot)
        for run in list(self._live):  # started but never recorded: an interrupted start
            run.scope.cancel()

    def _emit(
        self,
        kind: EventKind,
        child: str,
        error: BaseException | None = None,
        *,
        restarts: int | None = None,
    ) -> None:
        if restarts is None:
            restarts = self.restarts.get(child, 0)
        fields: dict[str, Any] = {"supervisor": self.name, "child": child, "restarts": restarts}
        if error is not None:
            fields.update(error=repr(error), exc_info=error)
        getattr(_log, _LEVELS.get(kind, "info"))(kind, **fields)
        if self.on_event is not None:
            try:
                self.on_event(SupervisorEvent(self.name, kind, child, error, restarts))
            except Exception as exc:
                _log.error("on_event_failed", supervisor=self.name, error=repr(exc), exc_info=exc)
