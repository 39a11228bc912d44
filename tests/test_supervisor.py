"""Erlang/OTP supervision of trio tasks (actorml.supervisor).

Every async test runs on trio's autojump clock (no sockets here): sleeps are simulated work.
"""

from __future__ import annotations

import itertools
import math

import pytest
import trio
from hypothesis import given
from hypothesis import strategies as st
from structlog.testing import capture_logs
from trio.testing import MockClock, wait_all_tasks_blocked

from actorml.supervisor import (
    ChildSpec,
    Restart,
    RestartIntensity,
    Strategy,
    Supervisor,
    SupervisorEvent,
    SupervisorGaveUp,
)


class Boom(Exception):
    """A child's crash."""


class Kids:
    """Scripted children that write their lifecycle to `log` ("start a", "crash a", ...).

    A child runs until told to `crash` or `finish`, or until its graceful stop (which it
    obeys unless `obey_stop=False`), and logs "cancel NAME" when cancelled.
    """

    def __init__(self) -> None:
        self.log: list[str] = []
        self._fates: dict[str, tuple[trio.Event, list[str]]] = {}

    def spec(
        self,
        name: str,
        *,
        restart: Restart | str = Restart.PERMANENT,
        graceful: bool = True,
        obey_stop: bool = True,
        shutdown_timeout_s: float = 5.0,
    ) -> ChildSpec:
        incarnations = itertools.count()

        async def start(*, task_status: trio.TaskStatus[str]) -> None:
            self.log.append(f"start {name}")
            fate = self._fates[name] = (trio.Event(), [])
            task_status.started(f"{name}-{next(incarnations)}")
            try:
                await fate[0].wait()
            except trio.Cancelled:
                self.log.append(f"cancel {name}")
                raise
            how = fate[1][0]
            self.log.append(f"{how} {name}")
            if how == "crash":
                raise Boom(name)

        def stop() -> None:
            if obey_stop:
                self._end(name, "stop")
            else:
                self.log.append(f"ignore {name}")

        return ChildSpec(
            name,
            start,
            restart=restart,
            stop=stop if graceful else None,
            shutdown_timeout_s=shutdown_timeout_s,
        )

    def crash(self, name: str) -> None:
        self._end(name, "crash")

    def finish(self, name: str) -> None:
        self._end(name, "exit")

    def _end(self, name: str, how: str) -> None:
        event, hows = self._fates[name]
        hows.append(how)
        event.set()


@pytest.fixture(name="kids")
def _kids() -> Kids:
    return Kids()


def crasher(name: str, *, after_s: float = 1.0, log: list[str] | None = None) -> ChildSpec:
    """A child that starts, works for `after_s` (simulated) seconds, then crashes."""

    async def start(*, task_status: trio.TaskStatus[None]) -> None:
        if log is not None:
            log.append(f"start {name}")
        task_status.started()
        await trio.sleep(after_s)
        raise Boom(name)

    return ChildSpec(name, start)


def failing_startup(name: str, failures: int, log: list[str]) -> ChildSpec:
    """A child whose first `failures` starts raise before calling `started`."""
    attempts = itertools.count()

    async def start(*, task_status: trio.TaskStatus[str]) -> None:
        log.append(f"start {name}")
        if next(attempts) < failures:
            raise Boom(f"{name} cannot start")
        task_status.started(name)
        await trio.sleep_forever()

    return ChildSpec(name, start)


class TestOneForOne:
    async def test_restarts_only_the_crashed_child(
        self, autojump_clock: MockClock, kids: Kids
    ) -> None:
        """A one_for_one supervisor restarts only the crashed child; siblings keep running."""
        sup = Supervisor("root", [kids.spec("a"), kids.spec("b"), kids.spec("c")])
        async with trio.open_nursery() as nursery:
            assert await nursery.start(sup.run) is sup
            assert kids.log == ["start a", "start b", "start c"]
            kids.log.clear()
            kids.crash("b")
            await wait_all_tasks_blocked()
            assert kids.log == ["crash b", "start b"]
            assert sup.restarts == {"a": 0, "b": 1, "c": 0}
            assert sup.started_value("b") == "b-1"
            assert sup.started_value("a") == "a-0"
            await sup.shutdown()

    async def test_startup_failure_is_a_crash(self, autojump_clock: MockClock) -> None:
        """A child failing before `started` is restarted and counted, and startup goes on."""
        log: list[str] = []
        sup = Supervisor("root", [failing_startup("a", 1, log), failing_startup("b", 2, log)])
        async with trio.open_nursery() as nursery:
            await nursery.start(sup.run)
            assert log == ["start a", "start a", "start b", "start b", "start b"]
            assert sup.restarts == {"a": 1, "b": 2}
            await sup.shutdown()

    async def test_returning_before_started_is_a_crash(self, autojump_clock: MockClock) -> None:
        """A child that returns without calling `started` counts as crashed, with a clear error."""
        events: list[SupervisorEvent] = []

        async def hasty(*, task_status: trio.TaskStatus[None]) -> None:
            return

        sup = Supervisor("root", [ChildSpec("h", hasty, Restart.TEMPORARY)], on_event=events.append)
        await sup.run()
        assert [e.kind for e in events] == ["child_crashed"]
        assert str(events[0].error) == "child 'h' returned before calling task_status.started()"


class TestOneForAll:
    async def test_stops_others_in_reverse_order_then_restarts_all(
        self, autojump_clock: MockClock, kids: Kids
    ) -> None:
        """A one_for_all supervisor stops the others last-first, then restarts all in order."""
        specs = [kids.spec(n) for n in "abcd"]
        sup = Supervisor("root", specs, strategy=Strategy.ONE_FOR_ALL)
        async with trio.open_nursery() as nursery:
            await nursery.start(sup.run)
            kids.log.clear()
            kids.crash("b")
            await wait_all_tasks_blocked()
            stops = ["crash b", "stop d", "stop c", "stop a"]
            assert kids.log == [*stops, "start a", "start b", "start c", "start d"]
            assert sup.restarts == {"a": 1, "b": 1, "c": 1, "d": 1}
            await sup.shutdown()

    async def test_temporary_sibling_is_not_restarted(
        self, autojump_clock: MockClock, kids: Kids
    ) -> None:
        """A temporary child stopped because a sibling crashed is removed, not restarted."""
        specs = [kids.spec("a"), kids.spec("t", restart=Restart.TEMPORARY), kids.spec("c")]
        sup = Supervisor("root", specs, strategy="one_for_all")
        async with trio.open_nursery() as nursery:
            await nursery.start(sup.run)
            kids.log.clear()
            kids.crash("a")
            await wait_all_tasks_blocked()
            assert kids.log == ["crash a", "stop c", "stop t", "start a", "start c"]
            assert sup.which_children() == ["a", "c"]
            await sup.shutdown()


class TestRestForOne:
    async def test_restarts_the_child_and_those_started_after_it(
        self, autojump_clock: MockClock, kids: Kids
    ) -> None:
        """A rest_for_one supervisor restarts the crashed child and the later ones only."""
        sup = Supervisor("root", [kids.spec(n) for n in "abcd"], strategy=Strategy.REST_FOR_ONE)
        async with trio.open_nursery() as nursery:
            await nursery.start(sup.run)
            kids.log.clear()
            kids.crash("b")
            await wait_all_tasks_blocked()
            assert kids.log == ["crash b", "stop d", "stop c", "start b", "start c", "start d"]
            assert sup.restarts == {"a": 0, "b": 1, "c": 1, "d": 1}
            kids.log.clear()
            kids.crash("d")
            await wait_all_tasks_blocked()
            assert kids.log == ["crash d", "start d"]
            await sup.shutdown()

    async def test_dynamic_child_counts_as_started_last(
        self, autojump_clock: MockClock, kids: Kids
    ) -> None:
        """A child added with start_child is last in start order, so rest_for_one restarts it."""
        sup = Supervisor("root", [kids.spec("a"), kids.spec("b")], strategy="rest_for_one")
        async with trio.open_nursery() as nursery:
            await nursery.start(sup.run)
            assert await sup.start_child(kids.spec("z")) == "z-0"
            assert sup.which_children() == ["a", "b", "z"]
            kids.log.clear()
            kids.crash("b")
            await wait_all_tasks_blocked()
            assert kids.log == ["crash b", "stop z", "start b", "start z"]
            assert sup.started_value("z") == "z-1"
            await sup.shutdown()


class TestRestartTypes:
    async def test_permanent_child_is_restarted_after_a_normal_exit(
        self, autojump_clock: MockClock, kids: Kids
    ) -> None:
        """A permanent child is restarted even when it returns normally."""
        sup = Supervisor("root", [kids.spec("p")])
        async with trio.open_nursery() as nursery:
            await nursery.start(sup.run)
            kids.finish("p")
            await wait_all_tasks_blocked()
            assert kids.log == ["start p", "exit p", "start p"]
            assert sup.restarts == {"p": 1}
            await sup.shutdown()

    async def test_transient_child_is_restarted_only_after_a_crash(
        self, autojump_clock: MockClock, kids: Kids
    ) -> None:
        """A transient child is restarted after a crash and removed after a normal exit."""
        spec = kids.spec("t", restart="transient")
        assert spec.restart is Restart.TRANSIENT
        sup = Supervisor("root", [kids.spec("p"), spec])
        async with trio.open_nursery() as nursery:
            await nursery.start(sup.run)
            kids.crash("t")
            await wait_all_tasks_blocked()
            assert sup.restarts["t"] == 1
            kids.finish("t")
            await wait_all_tasks_blocked()
            assert kids.log == ["start p", "start t", "crash t", "start t", "exit t"]
            assert sup.which_children() == ["p"]
            await sup.shutdown()

    async def test_temporary_child_is_never_restarted(
        self, autojump_clock: MockClock, kids: Kids
    ) -> None:
        """A temporary child that crashes is removed, not restarted."""
        sup = Supervisor("root", [kids.spec("p"), kids.spec("t", restart=Restart.TEMPORARY)])
        async with trio.open_nursery() as nursery:
            await nursery.start(sup.run)
            kids.crash("t")
            await wait_all_tasks_blocked()
            assert sup.which_children() == ["p"]
            assert sup.restarts == {"p": 0, "t": 0}
            with pytest.raises(LookupError, match=r"^no running child 't' in supervisor 'root'$"):
                sup.started_value("t")
            await sup.shutdown()

    async def test_run_returns_when_no_child_is_left(
        self, autojump_clock: MockClock, kids: Kids
    ) -> None:
        """run() returns once every child has ended for good."""
        specs = [kids.spec("t", restart="transient"), kids.spec("x", restart="temporary")]
        sup = Supervisor("root", specs)
        async with trio.open_nursery() as nursery:
            await nursery.start(sup.run)
            kids.finish("t")
            kids.crash("x")
        assert sup.which_children() == []


class TestIntensity:
    def test_counts_restarts_in_a_sliding_window(self) -> None:
        """More than max_restarts restarts within within_s seconds exceed the intensity."""
        now = [0.0]
        intensity = RestartIntensity(2, 10.0, clock=lambda: now[0])
        assert [intensity.record() for _ in range(2)] == [False, False]
        assert intensity.record() is True
        now[0] = 10.0  # the first three are now exactly within_s old, so out of the window
        assert intensity.record() is False
        assert intensity.count == 1

    @given(st.integers(0, 5), st.lists(st.floats(0, 20), max_size=30))
    def test_matches_a_brute_force_count(self, max_restarts: int, gaps: list[float]) -> None:
        """record() says exceeded iff more than max_restarts stamps are younger than within_s."""
        now = [0.0]
        intensity = RestartIntensity(max_restarts, 7.5, clock=lambda: now[0])
        stamps: list[float] = []
        for gap in gaps:
            now[0] += gap
            stamps.append(now[0])
            recent = [t for t in stamps if now[0] - t < 7.5]
            assert intensity.record() is (len(recent) > max_restarts)

    async def test_gives_up_and_raises_a_bare_error(
        self, autojump_clock: MockClock, kids: Kids
    ) -> None:
        """Too many restarts stop all children in reverse order and raise SupervisorGaveUp."""
        log: list[str] = []
        sup = Supervisor("node-root", [kids.spec("a"), crasher("worker", log=log), kids.spec("c")])
        with capture_logs() as logs, pytest.raises(SupervisorGaveUp) as info:
            await sup.run()
        assert str(info.value) == (
            "supervisor 'node-root' gave up: 4 restarts of 'worker' within 5.0s (max_restarts=3)"
        )
        assert (info.value.supervisor, info.value.child, info.value.restarts) == (
            "node-root",
            "worker",
            4,
        )
        assert isinstance(info.value.__cause__, Boom)
        assert trio.current_time() == 4.0
        assert log == ["start worker"] * 4
        assert kids.log == ["start a", "start c", "stop c", "stop a"]
        assert sup.restarts == {"a": 0, "worker": 3, "c": 0}
        gave_up = [e for e in logs if e["event"] == "supervisor_gave_up"]
        assert gave_up == [
            {
                "event": "supervisor_gave_up",
                "log_level": "error",
                "supervisor": "node-root",
                "child": "worker",
                "restarts": 4,
                "error": "Boom('worker')",
                "exc_info": info.value.__cause__,
            }
        ]
        crashes = [e for e in logs if e["event"] == "child_crashed"]
        assert [(e["child"], e["restarts"], e["error"]) for e in crashes] == [
            ("worker", n, "Boom('worker')") for n in range(4)
        ]

    async def test_restarts_spread_out_in_time_are_tolerated(
        self, autojump_clock: MockClock
    ) -> None:
        """Restarts further apart than the window never exceed the intensity."""
        tenth_restart = trio.Event()

        def on_event(event: SupervisorEvent) -> None:
            if event.kind == "child_restarted" and event.restarts == 10:
                tenth_restart.set()

        spec = crasher("w", after_s=2.0)
        sup = Supervisor("root", [spec], max_restarts=1, within_s=2.0, on_event=on_event)
        async with trio.open_nursery() as nursery:
            await nursery.start(sup.run)
            await tenth_restart.wait()
            assert trio.current_time() == 20.0  # a crash every two seconds, none given up on
            await sup.shutdown()

    async def test_persistent_startup_failure_gives_up(self, autojump_clock: MockClock) -> None:
        """A child that never starts makes run() give up before it reports started."""
        log: list[str] = []
        sup = Supervisor("root", [failing_startup("a", 99, log)], max_restarts=2)
        with pytest.raises(SupervisorGaveUp, match=r"^supervisor 'root' gave up: 3 restarts"):
            await sup.run()
        assert log == ["start a"] * 3

    async def test_giving_up_inside_a_nursery_raises_a_group(
        self, autojump_clock: MockClock
    ) -> None:
        """Run in a nursery, a supervisor giving up surfaces as an ExceptionGroup member."""
        sup = Supervisor("root", [crasher("w")], max_restarts=0)
        with pytest.RaisesGroup(SupervisorGaveUp):
            async with trio.open_nursery() as nursery:
                await nursery.start(sup.run)

    async def test_on_event_sees_the_lifecycle(self, autojump_clock: MockClock) -> None:
        """on_event receives every lifecycle event with the child's restart count."""
        events: list[SupervisorEvent] = []
        sup = Supervisor("root", [crasher("w")], max_restarts=1, on_event=events.append)
        with pytest.raises(SupervisorGaveUp):
            await sup.run()
        assert [(e.kind, e.child, e.restarts) for e in events] == [
            ("child_started", "w", 0),
            ("child_crashed", "w", 0),
            ("child_restarted", "w", 1),
            ("child_crashed", "w", 1),
            ("supervisor_gave_up", "w", 2),
        ]
        assert {e.supervisor for e in events} == {"root"}
        assert isinstance(events[-1].error, Boom)


class TestShutdown:
    async def test_stops_children_in_reverse_order(
        self, autojump_clock: MockClock, kids: Kids
    ) -> None:
        """shutdown() asks each child to stop, last started first, and run() then returns."""
        events: list[SupervisorEvent] = []
        sup = Supervisor("root", [kids.spec(n) for n in "abc"], on_event=events.append)
        async with trio.open_nursery() as nursery:
            await nursery.start(sup.run)
            kids.log.clear()
            await sup.shutdown()
            assert kids.log == ["stop c", "stop b", "stop a"]
            assert [e.child for e in events if e.kind == "child_stopped"] == ["c", "b", "a"]
            assert sup.restarts == {"a": 0, "b": 0, "c": 0}
        await sup.shutdown()  # no-op once stopped

    async def test_timeout_cancels_a_child_that_ignores_stop(
        self, autojump_clock: MockClock, kids: Kids
    ) -> None:
        """A child still running shutdown_timeout_s after the stop request is cancelled."""
        specs = [kids.spec("a"), kids.spec("deaf", obey_stop=False, shutdown_timeout_s=3.0)]
        sup = Supervisor("root", specs)
        async with trio.open_nursery() as nursery:
            await nursery.start(sup.run)
            began = trio.current_time()
            await sup.shutdown()
            assert trio.current_time() - began == 3.0
        assert kids.log[2:] == ["ignore deaf", "cancel deaf", "stop a"]

    async def test_child_without_stop_is_cancelled_at_once(
        self, autojump_clock: MockClock, kids: Kids
    ) -> None:
        """A child with no graceful stop is cancelled immediately on shutdown."""
        sup = Supervisor("root", [kids.spec("a", graceful=False)])
        async with trio.open_nursery() as nursery:
            await nursery.start(sup.run)
            await sup.shutdown()
        assert kids.log == ["start a", "cancel a"]
        assert trio.current_time() == 0.0

    async def test_outer_cancellation_stops_children_gracefully(
        self, autojump_clock: MockClock, kids: Kids
    ) -> None:
        """Cancelling run() stops children in reverse order, bounded by their timeouts."""
        specs = [kids.spec("a"), kids.spec("deaf", obey_stop=False, shutdown_timeout_s=2.0)]
        sup = Supervisor("root", [*specs, kids.spec("c")])
        with trio.CancelScope() as scope:
            async with trio.open_nursery() as nursery:
                await nursery.start(sup.run)
                kids.log.clear()
                scope.cancel()
        assert kids.log == ["stop c", "ignore deaf", "cancel deaf", "stop a"]
        assert trio.current_time() == 2.0

    async def test_terminate_child_stops_and_forgets_it(
        self, autojump_clock: MockClock, kids: Kids
    ) -> None:
        """terminate_child stops one child gracefully; it is not restarted."""
        sup = Supervisor("root", [kids.spec("a"), kids.spec("b")])
        async with trio.open_nursery() as nursery:
            await nursery.start(sup.run)
            await sup.terminate_child("a")
            await wait_all_tasks_blocked()
            assert kids.log == ["start a", "start b", "stop a"]
            assert sup.which_children() == ["b"]
            assert sup.restarts == {"a": 0, "b": 0}
            with pytest.raises(LookupError, match=r"^no child 'a' in supervisor 'root'$"):
                await sup.terminate_child("a")
            await sup.terminate_child("b")  # the last child: run() returns
        assert kids.log[-1] == "stop b"

    async def test_start_child_failure_is_raised_to_the_caller(
        self, autojump_clock: MockClock, kids: Kids
    ) -> None:
        """A dynamic child failing at startup raises in start_child and is not added."""
        log: list[str] = []
        sup = Supervisor("root", [kids.spec("a")])
        async with trio.open_nursery() as nursery:
            await nursery.start(sup.run)
            with pytest.raises(Boom, match=r"^x cannot start$"):
                await sup.start_child(failing_startup("x", 1, log))
            with pytest.raises(ValueError, match=r"^supervisor 'root' already has a child 'a'$"):
                await sup.start_child(kids.spec("a"))
            assert sup.which_children() == ["a"]
            assert log == ["start x"]
            await sup.shutdown()
        with pytest.raises(RuntimeError, match=r"^supervisor 'root' is not running$"):
            await sup.start_child(kids.spec("y"))

    async def test_empty_supervisor_waits_for_dynamic_children(
        self, autojump_clock: MockClock, kids: Kids
    ) -> None:
        """A supervisor started with no children keeps running until given one or shut down."""
        sup = Supervisor("root", [])
        async with trio.open_nursery() as nursery:
            await nursery.start(sup.run)
            await wait_all_tasks_blocked()
            assert await sup.start_child(kids.spec("a", restart="temporary")) == "a-0"
            kids.finish("a")
        assert kids.log == ["start a", "exit a"]

    async def test_async_stop_request_is_awaited(self, autojump_clock: MockClock) -> None:
        """An async stop callable is awaited and the child then ends without cancellation."""
        stopped = trio.Event()
        log: list[str] = []

        async def child(*, task_status: trio.TaskStatus[None]) -> None:
            task_status.started()
            await stopped.wait()
            log.append("returned")

        async def stop() -> None:
            await trio.sleep(1.0)
            stopped.set()

        sup = Supervisor("root", [ChildSpec("c", child, stop=stop)])
        async with trio.open_nursery() as nursery:
            await nursery.start(sup.run)
            await sup.shutdown()
        assert log == ["returned"]
        assert trio.current_time() == 1.0

    async def test_failed_stop_request_cancels_at_once(self, autojump_clock: MockClock) -> None:
        """A stop callable that raises is logged and the child is cancelled without waiting."""
        cancelled: list[str] = []

        async def child(*, task_status: trio.TaskStatus[None]) -> None:
            task_status.started()
            try:
                await trio.sleep_forever()
            finally:
                cancelled.append("c")

        def stop() -> None:
            raise Boom("no way")

        sup = Supervisor("root", [ChildSpec("c", child, stop=stop, shutdown_timeout_s=9.0)])
        with capture_logs() as logs:
            async with trio.open_nursery() as nursery:
                await nursery.start(sup.run)
                await sup.shutdown()
        assert cancelled == ["c"]
        assert trio.current_time() == 0.0
        failed = [e for e in logs if e["event"] == "child_stop_failed"]
        assert [(e["child"], e["error"]) for e in failed] == [("c", "Boom('no way')")]

    async def test_crash_while_stopping_is_not_restarted(
        self, autojump_clock: MockClock, kids: Kids
    ) -> None:
        """A child raising in answer to a graceful stop is reported stopped, not restarted."""
        events: list[SupervisorEvent] = []
        stop_asked = trio.Event()

        async def child(*, task_status: trio.TaskStatus[None]) -> None:
            task_status.started()
            await stop_asked.wait()
            raise Boom("dying words")

        spec = ChildSpec("c", child, stop=stop_asked.set)
        deaf = kids.spec("d", obey_stop=False, shutdown_timeout_s=1.0)
        sup = Supervisor("root", [spec, deaf], on_event=events.append)
        async with trio.open_nursery() as nursery:
            await nursery.start(sup.run)
            await sup.terminate_child("c")
            assert sup.which_children() == ["d"]
            assert sup.restarts == {"c": 0, "d": 0}
            stopped = [e for e in events if e.kind == "child_stopped"]
            assert [(e.child, str(e.error)) for e in stopped] == [("c", "dying words")]
            nursery.start_soon(sup.shutdown)
            await wait_all_tasks_blocked()  # shutdown() is now waiting for "d" to stop
            with pytest.raises(RuntimeError, match=r"^supervisor 'root' is shutting down$"):
                await sup.start_child(spec)
        assert kids.log == ["start d", "ignore d", "cancel d"]


class TestNesting:
    async def test_parent_restarts_a_child_supervisor_that_gave_up(
        self, autojump_clock: MockClock
    ) -> None:
        """A nested supervisor giving up is a crash to its parent, which restarts it."""
        log: list[str] = []
        attempts = itertools.count()

        async def flaky(*, task_status: trio.TaskStatus[None]) -> None:
            log.append("start flaky")
            task_status.started()
            if next(attempts) < 2:  # crashes twice, enough for the nested one to give up
                raise Boom("flaky")
            await trio.sleep_forever()

        sub = Supervisor("sub", [ChildSpec("flaky", flaky)], max_restarts=1)
        parent = Supervisor("parent", [ChildSpec("sub", sub.run, stop=sub.shutdown)])
        async with trio.open_nursery() as nursery:
            await nursery.start(parent.run)
            await wait_all_tasks_blocked()
            assert parent.restarts == {"sub": 1}
            assert parent.started_value("sub") is sub
            assert log == ["start flaky"] * 3
            await parent.shutdown()

    async def test_parent_gives_up_on_a_child_supervisor_that_keeps_failing(
        self, autojump_clock: MockClock
    ) -> None:
        """The parent's SupervisorGaveUp carries the child's, which carries the crash."""
        sub = Supervisor("sub", [crasher("w")], max_restarts=0)
        parent = Supervisor("parent", [ChildSpec("sub", sub.run)], max_restarts=2, within_s=60)
        with pytest.raises(
            SupervisorGaveUp, match=r"^supervisor 'parent' gave up: 3 restarts"
        ) as info:
            await parent.run()
        child_gave_up = info.value.__cause__
        assert isinstance(child_gave_up, SupervisorGaveUp)
        assert child_gave_up.supervisor == "sub"
        assert isinstance(child_gave_up.__cause__, Boom)
        assert parent.restarts == {"sub": 2}
        assert trio.current_time() == 3.0

    async def test_shutdown_reaches_grandchildren_in_reverse_order(
        self, autojump_clock: MockClock, kids: Kids
    ) -> None:
        """Shutting down the parent stops a nested supervisor's children in reverse order."""
        sub = Supervisor("sub", [kids.spec("s1"), kids.spec("s2")])
        specs = [kids.spec("a"), ChildSpec("sub", sub.run), kids.spec("z")]
        parent = Supervisor("parent", specs)
        async with trio.open_nursery() as nursery:
            await nursery.start(parent.run)
            kids.log.clear()
            await parent.shutdown()
        assert kids.log == ["stop z", "stop s2", "stop s1", "stop a"]


class TestValidation:
    def test_rejects_bad_configuration(self) -> None:
        """Bad names, counts and durations are refused with the offending value."""

        async def noop(*, task_status: trio.TaskStatus[None]) -> None:
            task_status.started()

        with pytest.raises(ValueError, match=r"^duplicate child names in children: a$"):
            Supervisor("s", [ChildSpec("a", noop), ChildSpec("a", noop)])
        with pytest.raises(ValueError, match=r"^max_restarts must be an integer >= 0, got -1$"):
            Supervisor("s", [], max_restarts=-1)
        with pytest.raises(ValueError, match=r"^within_s must be a finite number of seconds > 0"):
            RestartIntensity(1, 0.0)
        with pytest.raises(ValueError, match=r"^shutdown_timeout_s must be a finite .* got inf$"):
            ChildSpec("a", noop, shutdown_timeout_s=math.inf)
        with pytest.raises(ValueError, match=r"'eventually' is not a valid Restart"):
            ChildSpec("a", noop, restart="eventually")

    async def test_run_twice_at_once_is_refused(
        self, autojump_clock: MockClock, kids: Kids
    ) -> None:
        """A supervisor instance runs at most once at a time."""
        sup = Supervisor("root", [kids.spec("a")])
        async with trio.open_nursery() as nursery:
            await nursery.start(sup.run)
            with pytest.raises(RuntimeError, match=r"^supervisor 'root' is already running$"):
                await sup.run()
            await sup.shutdown()
