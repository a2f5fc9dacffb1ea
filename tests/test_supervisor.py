"""The supervisor's rules, driven through a fake operating system (no real processes).

`FakeOS` stands in for `gethookd.process.supervisor.OS`: fork hands out pids and readiness fds,
kill records the signal (and, if the fake child obeys, makes it exit), reap returns the
exits, and the clock only moves when a test moves it. A few tests at the end fork for
real to check what `OS.fork` promises a child.
"""

from __future__ import annotations

import errno
import logging
import os
import signal

import pytest

from gethookd import config as config_mod
from gethookd.config import ConfigError
from gethookd.process.supervisor import (
    BACKOFF,
    BACKOFF_MAX,
    EXIT_BOOT,
    FAST_STOP_GRACE,
    FATAL,
    HEALTHY_AFTER,
    MAX_WORKER_PROCESSES,
    OS,
    READY_WAIT,
    RUNNING,
    STARTING,
    STOP_GRACE,
    STOPPING,
    Supervisor,
    backoff_delay,
)

TERM, QUIT, KILL, INT, HUP, TTIN, TTOU = (
    signal.SIGTERM,
    signal.SIGQUIT,
    signal.SIGKILL,
    signal.SIGINT,
    signal.SIGHUP,
    signal.SIGTTIN,
    signal.SIGTTOU,
)


class FakeOS:
    def __init__(self) -> None:
        self.clock = 1000.0
        self._next_pid = 100
        self._next_fd = 500
        self.mains: dict[int, object] = {}  # pid -> child_main of every fork
        self.live: set[int] = set()
        self.forks: list[int] = []
        self.kills: list[tuple[int, int]] = []
        self.group_kills: list[tuple[int, int]] = []
        self.watchdog: float | None = None
        self.exits: list[tuple[int, int]] = []
        self.closed: list[int] = []
        self.notes: list[str] = []
        self.listens: list[tuple[str, int, int]] = []
        self.busy: set[int] = set()  # ports that cannot be bound
        self.fork_error: OSError | None = None
        self.obey: set[int] = {TERM, QUIT, INT}  # signals a fake child exits on (KILL always)
        self.record = None
        self.script: list = []  # callables run by wait(), one per turn of the real loop
        self.timeouts: list[float] = []
        self.restarts: list[str] = []  # roles of the restarts counted for /metrics

    # -- the facade ------------------------------------------------------------------

    def fork(self, child_main):
        if self.fork_error:
            raise self.fork_error
        self._next_pid += 1
        self._next_fd += 1
        pid = self._next_pid
        self.mains[pid] = child_main
        self.live.add(pid)
        self.forks.append(pid)
        return pid, self._next_fd

    def kill(self, pid, sig):
        self.kills.append((pid, sig))
        if pid in self.live and (sig == KILL or sig in self.obey):
            self.exit(pid, -sig)

    def kill_group(self, pid, sig):
        self.group_kills.append((pid, sig))
        self.kill(pid, sig)

    def watchdog_interval(self):
        return self.watchdog

    def reap(self):
        done, self.exits = self.exits, []
        return done

    def restarted(self, role):
        self.restarts.append(role)

    def now(self):
        return self.clock

    def listen(self, host, port):
        if port in self.busy:
            raise OSError(errno.EADDRINUSE, "Address already in use")
        self._next_fd += 1
        self.listens.append((host, port, self._next_fd))
        return self._next_fd

    def close(self, fd):
        self.closed.append(fd)

    def install_signals(self, record):
        self.record = record

    def wait(self, fds, timeout):
        self.timeouts.append(timeout)
        if not self.script:
            raise AssertionError("the loop went on after the script ended")
        return self.script.pop(0)(fds) or []

    def notify(self, message):
        self.notes.append(message)

    # -- test helpers ----------------------------------------------------------------

    def exit(self, pid, code):
        self.live.discard(pid)
        self.exits.append((pid, code))

    def advance(self, seconds):
        self.clock += seconds

    def signals_to(self, pid):
        return [sig for p, sig in self.kills if p == pid]


def make_config(**values: str) -> config_mod.Config:
    env = {"HOST": "127.0.0.1", "PORT": "8080", "DRAIN_TIMEOUT": "20s", **values}
    return config_mod.load(None, env)


def fake_role(calls):
    def role(config, index, ready, listen_fd):
        calls.append((config, index, listen_fd))
        return 0

    return role


def started(role="all", reload_config=None, **values):
    fake = FakeOS()
    calls: list = []
    roles = {"api": fake_role(calls), "worker": fake_role(calls)}
    config = make_config(**values)
    sup = Supervisor(config, reload_config or (lambda: config), roles, role=role, system=fake)
    sup.role_calls = calls
    assert sup.start()
    assert sup.step()
    return sup, fake


def child(sup, name, generation=None):
    generation = generation or sup.generation
    [found] = [c for c in sup.children if c.name == name and c.generation == generation]
    return found


def make_ready(sup, *names):
    for c in list(sup.children):
        if c.ready_fd is not None and (not names or c.name in names):
            sup.child_ready(c.ready_fd, b"1")


def live_pids(sup):
    return {c.pid for c in sup.children if c.pid is not None}


# -- starting -------------------------------------------------------------------------


def test_start_forks_the_desired_set_and_says_ready_once_all_are_ready():
    sup, fake = started(WORKER_PROCESSES="2")
    assert [c.name for c in sup.children] == ["api", "worker-1", "worker-2"]
    assert len(fake.forks) == 3 and all(c.state == STARTING for c in sup.children)
    assert fake.listens == [("127.0.0.1", 8080, sup.listen_fd)]
    make_ready(sup, "api", "worker-1")
    sup.step()
    assert "READY=1" not in fake.notes, "READY before every process is up"
    make_ready(sup, "worker-2")
    sup.step()
    sup.step()
    assert fake.notes.count("READY=1") == 1
    assert all(c.state == RUNNING for c in sup.children)
    assert fake.kills == []


@pytest.mark.parametrize(
    "role, names, listens",
    [("all", ["api", "worker-1"], 1), ("api", ["api"], 1), ("worker", ["worker-1"], 0)],
)
def test_the_role_decides_the_desired_set(role, names, listens):
    sup, fake = started(role=role)
    assert [c.name for c in sup.children] == names
    assert len(fake.listens) == listens


def test_children_get_the_config_and_only_the_api_gets_the_socket(monkeypatch):
    monkeypatch.setenv("NOTIFY_SOCKET", "/nonexistent/notify")
    sup, fake = started(WORKER_PROCESSES="2")
    listen_fd = sup.listen_fd
    api, worker = child(sup, "api"), child(sup, "worker-2")
    assert fake.mains[api.pid](-1) == 0
    assert fake.mains[worker.pid](-1) == 0
    (api_config, _, api_fd), (worker_config, index, worker_fd) = sup.role_calls
    assert api_config is sup.config and worker_config is sup.config
    assert api_fd == listen_fd and worker_fd is None and index == 2
    # In the child: the other children's readiness pipes and (for a worker) the socket go,
    # and only the master may talk to systemd.
    assert child(sup, "worker-1").ready_fd in fake.closed
    assert listen_fd in fake.closed
    assert "NOTIFY_SOCKET" not in os.environ


def test_cannot_listen_means_nothing_starts_and_exit_code_3():
    fake = FakeOS()
    fake.busy.add(8080)
    sup = Supervisor(make_config(), make_config, {}, system=fake)
    assert not sup.start()
    assert sup.exit_code == EXIT_BOOT
    assert fake.forks == []


def test_ready_pipe_closed_without_a_word_is_not_ready():
    sup, fake = started()
    worker = child(sup, "worker-1")
    fd = worker.ready_fd
    sup.child_ready(fd, b"")
    assert worker.state == STARTING and worker.ready_fd is None and fd in fake.closed
    sup.child_ready(fd, b"1")  # a stale fd changes nothing
    assert worker.state == STARTING


# -- restarts and backoff -----------------------------------------------------------------


def crash_and_measure_delay(sup, fake, name):
    """Kill `name` now; return how long the supervisor waits before forking it again."""
    c = child(sup, name)
    forks = len(fake.forks)
    fake.exit(c.pid, 1)
    sup.step()
    assert c.state == BACKOFF and c.pid is None
    waited = 0.0
    while len(fake.forks) == forks:
        fake.advance(0.25)
        waited += 0.25
        sup.step()
        assert waited < 120, "never restarted"
    assert c.pid == fake.forks[-1] and c.state == STARTING
    return waited


def test_a_dead_child_is_restarted_with_growing_backoff_capped():
    sup, fake = started()
    api_pid = child(sup, "api").pid
    delays = [crash_and_measure_delay(sup, fake, "worker-1") for _ in range(9)]
    assert delays == [0.5, 1, 2, 4, 8, 16, 30, 30, 30]
    assert BACKOFF_MAX == 30
    assert fake.kills == [] and child(sup, "api").pid == api_pid, "others are left alone"
    assert fake.restarts == ["worker"] * 9, "each restart is counted for /metrics"


def test_backoff_starts_again_after_a_healthy_run():
    sup, fake = started()
    assert [crash_and_measure_delay(sup, fake, "worker-1") for _ in range(3)] == [0.5, 1, 2]
    make_ready(sup)
    fake.advance(HEALTHY_AFTER)
    sup.step()
    assert crash_and_measure_delay(sup, fake, "worker-1") == 0.5


def test_backoff_never_overflows():
    assert backoff_delay(0) == 0.5
    assert backoff_delay(10_000) == BACKOFF_MAX


def test_a_failed_fork_is_retried_with_backoff():
    sup, fake = started()
    worker = child(sup, "worker-1")
    fake.fork_error = OSError(errno.EAGAIN, "Resource temporarily unavailable")
    fake.exit(worker.pid, 1)
    sup.step()
    fake.advance(0.5)
    sup.step()  # the fork fails: backoff again, longer
    assert worker.state == BACKOFF and worker.next_start == fake.clock + 1.0
    fake.fork_error = None
    fake.advance(1.0)
    sup.step()
    assert worker.state == STARTING and worker.pid == fake.forks[-1]


def test_exit_boot_is_fatal_and_stops_everything_with_exit_code_3():
    sup, fake = started(WORKER_PROCESSES="2")
    make_ready(sup)
    sup.step()
    w1, w2, api = child(sup, "worker-1"), child(sup, "worker-2"), child(sup, "api")
    fake.obey = set()  # the others take their time to drain
    fake.exit(w1.pid, EXIT_BOOT)
    assert sup.step()
    assert w1.state == FATAL and sup.exit_code == EXIT_BOOT and sup.mood == "stopping"
    assert fake.signals_to(api.pid) == [TERM] and fake.signals_to(w2.pid) == [TERM]
    forks = len(fake.forks)
    fake.advance(60)
    fake.exit(api.pid, 0)
    fake.exit(w2.pid, 0)
    assert not sup.step()
    assert len(fake.forks) == forks, "nothing is restarted"
    assert sup.exit_code == EXIT_BOOT


# -- stopping -------------------------------------------------------------------------


def test_sigterm_sends_term_to_all_and_ends_when_all_are_reaped():
    sup, fake = started(WORKER_PROCESSES="2")
    make_ready(sup)
    crashed = child(sup, "worker-2")
    fake.exit(crashed.pid, 1)  # waiting out its backoff when the stop comes
    sup.step()
    fake.obey = set()
    pids = live_pids(sup)
    sup.signals.append(TERM)
    assert sup.step()
    assert sorted(p for p, _ in fake.kills) == sorted(pids)
    assert {sig for _, sig in fake.kills} == {TERM}
    assert "STOPPING=1" in fake.notes
    assert all(c.state == STOPPING for c in sup.children if c.pid)
    forks = len(fake.forks)
    first, second = sorted(pids)
    fake.advance(5)
    fake.exit(first, 1)  # an unclean exit while stopping is not restarted either
    assert sup.step()
    sup.signals.append(TERM)  # a second TERM changes nothing
    assert sup.step()
    assert fake.signals_to(second) == [TERM]
    fake.exit(second, 0)
    assert not sup.step()
    assert len(fake.forks) == forks and sup.exit_code == 0


def test_sigkill_after_the_stop_deadline():
    sup, fake = started()
    make_ready(sup)
    fake.obey = set()  # they ignore TERM
    sup.signals.append(TERM)
    sup.step()
    deadline = 20 + STOP_GRACE  # DRAIN_TIMEOUT + grace
    fake.advance(deadline - 0.1)
    assert sup.step()
    assert KILL not in {sig for _, sig in fake.kills}
    fake.advance(0.1)
    assert sup.step()
    assert sorted(sig for _, sig in fake.kills) == sorted([TERM, TERM, KILL, KILL])
    assert not sup.step()  # reaped


@pytest.mark.parametrize("sig", [INT, QUIT])
def test_sigint_and_sigquit_stop_fast(sig):
    sup, fake = started()
    make_ready(sup)
    fake.obey = set()
    sup.signals.append(sig)
    sup.step()
    assert {s for _, s in fake.kills} == {QUIT}
    fake.advance(FAST_STOP_GRACE)
    sup.step()
    assert [s for _, s in fake.kills].count(KILL) == 2
    assert not sup.step()
    assert sup.exit_code == 0


def test_sigint_after_sigterm_hurries_the_stop():
    sup, fake = started()
    make_ready(sup)
    fake.obey = set()
    sup.signals.append(TERM)
    sup.step()
    fake.advance(1)
    sup.signals.append(INT)
    sup.step()
    api = child(sup, "api")
    assert fake.signals_to(api.pid) == [TERM, QUIT]
    fake.advance(FAST_STOP_GRACE)  # well before DRAIN_TIMEOUT + grace
    sup.step()
    assert fake.signals_to(api.pid) == [TERM, QUIT, KILL]


# -- reloading ------------------------------------------------------------------------


def reloading(**new_values):
    holder = {}

    def reload_config():
        return holder.get("next") or make_config(**new_values)

    sup, fake = started(reload_config=reload_config)
    make_ready(sup)
    sup.step()
    return sup, fake, holder


def test_sighup_starts_a_new_generation_and_retires_the_old_once_it_is_ready():
    sup, fake, _ = reloading(WORKER_PROCESSES="2", CORS_ORIGIN="https://new.example")
    old = {c.name: c.pid for c in sup.children}
    sup.signals.append(HUP)
    sup.step()
    assert sup.generation == 2
    assert sup.config.CORS_ORIGIN == "https://new.example"
    new = [c for c in sup.children if c.generation == 2]
    assert [c.name for c in new] == ["api", "worker-1", "worker-2"]
    assert any(n.startswith("RELOADING=1") for n in fake.notes)
    assert fake.kills == [], "the old generation serves until the new one is ready"
    make_ready(sup, "api", "worker-1")
    sup.step()
    assert fake.kills == []
    fake.advance(5)
    for c in new:
        if c.ready_fd is not None:
            sup.child_ready(c.ready_fd, b"1")
    sup.step()
    assert sorted(fake.kills) == sorted((pid, TERM) for pid in old.values())
    assert fake.notes[-1] == "READY=1"
    sup.step()  # they obeyed TERM: reap them
    assert [c.generation for c in sup.children] == [2, 2, 2], "retired children are forgotten"
    assert len(fake.forks) == 2 + 3, "the retired generation is not restarted"
    assert sup.listen_fd == fake.listens[0][2], "the same socket serves both generations"
    # The new API role is handed the same listening socket.
    fake.mains[child(sup, "api").pid](-1)
    assert sup.role_calls[-1][2] == sup.listen_fd
    assert sup.role_calls[-1][0].CORS_ORIGIN == "https://new.example"


def test_the_old_generation_retires_after_ready_wait_if_the_new_one_never_gets_ready():
    sup, fake, _ = reloading()
    old = live_pids(sup)
    sup.signals.append(HUP)
    sup.step()
    notes = len(fake.notes)
    fake.advance(READY_WAIT - 0.5)
    sup.step()
    assert fake.kills == []
    fake.advance(0.5)
    sup.step()
    assert sorted(fake.kills) == sorted((pid, TERM) for pid in old)
    assert fake.notes[notes:] == ["READY=1"]
    sup.step()
    assert live_pids(sup) == {c.pid for c in sup.children if c.generation == 2}
    assert sup._timeout() == 1.0, "nothing is due: no busy loop"


def test_a_bad_config_on_reload_keeps_the_running_one(caplog):
    sup, fake, holder = reloading()

    def broken():
        raise ConfigError("WORKER_PROCESSES='many' (from file) is invalid")

    sup.reload_config = broken
    config, pids = sup.config, live_pids(sup)
    with caplog.at_level(logging.ERROR, "gethookd.supervisor"):
        sup.signals.append(HUP)
        sup.step()
    assert "reload refused" in caplog.text and "WORKER_PROCESSES" in caplog.text
    assert sup.config is config and sup.generation == 1 and live_pids(sup) == pids
    assert fake.kills == [] and len(fake.forks) == 2
    assert not any("RELOADING" in n for n in fake.notes)


def test_a_reload_onto_a_busy_port_is_refused_and_a_free_one_is_taken():
    sup, fake, holder = reloading()
    old_fd = sup.listen_fd
    fake.busy.add(9090)
    holder["next"] = make_config(PORT="9090")
    sup.signals.append(HUP)
    sup.step()
    assert sup.generation == 1 and sup.config.PORT == 8080 and sup.listen_fd == old_fd
    holder["next"] = make_config(PORT="9091")
    sup.signals.append(HUP)
    sup.step()
    assert sup.generation == 2 and sup.listen_fd != old_fd and old_fd in fake.closed
    fake.mains[child(sup, "api").pid](-1)
    assert sup.role_calls[-1][2] == sup.listen_fd == fake.listens[-1][2]


def test_an_old_child_dying_during_a_reload_is_not_restarted():
    sup, fake, _ = reloading()
    old_worker = child(sup, "worker-1", generation=1)
    sup.signals.append(HUP)
    sup.step()
    forks = len(fake.forks)
    fake.exit(old_worker.pid, 1)
    sup.step()
    fake.advance(5)
    sup.step()
    assert len(fake.forks) == forks
    assert old_worker not in sup.children


def test_a_new_child_crashing_during_a_reload_is_restarted_and_then_the_old_retire():
    sup, fake, _ = reloading()
    old = live_pids(sup)
    sup.signals.append(HUP)
    sup.step()
    new_worker = child(sup, "worker-1", generation=2)
    make_ready(sup, "api")
    fake.exit(new_worker.pid, 1)
    sup.step()
    assert new_worker.state == BACKOFF and fake.kills == []
    fake.advance(0.5)
    sup.step()
    make_ready(sup)
    sup.step()
    assert sorted(fake.kills) == sorted((pid, TERM) for pid in old)


def test_sighup_while_stopping_is_ignored():
    sup, fake, _ = reloading()
    fake.obey = set()
    sup.signals += [TERM, HUP]
    sup.step()
    assert sup.generation == 1 and len(fake.forks) == 2


def test_a_retired_child_that_hangs_is_killed():
    sup, fake, _ = reloading()
    old_api = child(sup, "api").pid
    fake.obey = set()
    sup.signals.append(HUP)
    sup.step()
    make_ready(sup)
    sup.step()
    assert fake.signals_to(old_api) == [TERM]
    fake.advance(20 + STOP_GRACE)
    sup.step()
    assert fake.signals_to(old_api) == [TERM, KILL]


# -- the real loop, on the fake ---------------------------------------------------------


def test_run_loop_until_sigterm():
    fake = FakeOS()
    config = make_config()
    sup = Supervisor(config, lambda: config, {"api": None, "worker": None}, system=fake)

    def all_ready(fds):
        return [(fd, b"1") for fd in fds]

    def crash_worker(fds):
        [worker] = [c for c in sup.children if c.role == "worker"]
        fake.exit(worker.pid, -9)

    def after_backoff(fds):
        fake.advance(0.5)

    def terminate(fds):
        fake.record(TERM)

    fake.script = [all_ready, crash_worker, after_backoff, all_ready, terminate]
    assert sup.run() == 0
    assert len(fake.forks) == 3
    assert fake.script == []
    assert fake.timeouts[2] == 0.5, "the loop wakes for the restart"
    assert fake.notes.count("READY=1") == 1
    assert fake.closed[-1] == fake.listens[0][2], "the socket is closed on the way out"


def test_run_loop_returns_3_when_a_child_cannot_boot():
    fake = FakeOS()
    config = make_config()
    sup = Supervisor(config, lambda: config, {"api": None, "worker": None}, system=fake)

    def boot_fails(fds):
        fake.exit(fake.forks[0], EXIT_BOOT)

    fake.script = [boot_fails, lambda fds: None]
    assert sup.run() == EXIT_BOOT
    assert len(fake.forks) == 2


# -- what the real OS.fork promises a child ----------------------------------------------


def _wait_child(pid):
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def test_real_fork_exit_codes_and_ready_pipe():
    system = OS()

    def says_ready(ready_fd):
        os.write(ready_fd, b"1")
        return 7

    pid, fd = system.fork(says_ready)
    try:
        assert _wait_child(pid) == 7
        assert os.read(fd, 16) == b"1"
    finally:
        os.close(fd)

    def exits_3(_ready_fd):
        raise SystemExit(3)

    def crashes(_ready_fd):
        raise RuntimeError("boom")

    def exits_quietly(_ready_fd):
        raise SystemExit()

    for main, code in [(exits_3, 3), (crashes, 1), (exits_quietly, 0)]:
        pid, fd = system.fork(main)
        os.close(fd)
        assert _wait_child(pid) == code


def test_real_fork_child_starts_with_default_signal_handlers():
    system = OS()
    recorded = []
    previous = {s: signal.getsignal(s) for s in (TERM, HUP)}
    try:
        for s in (TERM, HUP):
            signal.signal(s, lambda signum, _frame: recorded.append(signum))

        def check(_ready_fd):
            ok = all(signal.getsignal(s) == signal.SIG_DFL for s in (TERM, HUP))
            return 0 if ok else 1

        pid, fd = system.fork(check)
        os.close(fd)
        assert _wait_child(pid) == 0

        def wait_forever(_ready_fd):
            signal.pause()
            return 0

        pid, fd = system.fork(wait_forever)
        os.close(fd)
        os.kill(pid, TERM)  # may land before the child is fully set up: it must still die
        assert _wait_child(pid) == -TERM
        assert recorded == []
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


# -- a child that does not stop is killed with its whole process group ---------------------


def test_the_stop_deadline_kills_each_childs_process_group():
    sup, fake = started()
    make_ready(sup)
    fake.obey = set()
    sup.signals.append(INT)
    sup.step()
    fake.advance(FAST_STOP_GRACE)
    sup.step()
    assert sorted(fake.group_kills) == sorted((pid, KILL) for pid in fake.forks)


def test_real_children_lead_their_own_process_group():
    system = OS()

    def report(ready_fd):
        os.write(ready_fd, b"1" if os.getpgid(0) == os.getpid() else b"0")
        return 0

    pid, fd = system.fork(report)
    try:
        assert _wait_child(pid) == 0
        assert os.read(fd, 16) == b"1"
    finally:
        os.close(fd)


# -- SIGTTIN / SIGTTOU ----------------------------------------------------------------------


def test_sigttin_adds_a_delivery_process_and_sigttou_drains_one():
    sup, fake = started(WORKER_PROCESSES="2")
    make_ready(sup)
    sup.step()
    sup.signals.append(TTIN)
    sup.step()
    assert [c.name for c in sup.children] == ["api", "worker-1", "worker-2", "worker-3"]
    third = child(sup, "worker-3")
    assert third.state == STARTING and third.pid == fake.forks[-1]
    make_ready(sup)
    sup.step()
    fake.obey = set()  # a draining worker takes its time
    sup.signals.append(TTOU)
    sup.step()
    assert fake.signals_to(third.pid) == [TERM]
    assert third.state == STOPPING and third.retired
    sup.step()
    assert third.pid in live_pids(sup), "it drains; nothing else is touched"
    assert all(fake.signals_to(c.pid) == [] for c in sup.children if c is not third)
    fake.exit(third.pid, 0)
    sup.step()
    assert [c.name for c in sup.children] == ["api", "worker-1", "worker-2"]
    forks = len(fake.forks)
    fake.advance(60)
    sup.step()
    assert len(fake.forks) == forks, "a retired worker is not restarted"


def test_sigttou_never_goes_below_zero_and_sigttin_has_a_cap(caplog):
    sup, fake = started()
    make_ready(sup)
    worker = child(sup, "worker-1").pid
    for _ in range(3):
        sup.signals.append(TTOU)
    sup.step()
    assert sup.workers == 0
    assert fake.signals_to(worker) == [TERM]
    assert [c.name for c in sup.children] == ["api"]
    assert "delivery processes stay at 0" in caplog.text
    sup.workers = MAX_WORKER_PROCESSES
    sup.signals.append(TTIN)
    sup.step()
    assert sup.workers == MAX_WORKER_PROCESSES
    assert f"between 0 and {MAX_WORKER_PROCESSES}" in caplog.text


def test_sigttin_on_an_api_only_instance_changes_nothing():
    sup, fake = started(role="api")
    forks = len(fake.forks)
    sup.signals.append(TTIN)
    sup.step()
    assert len(fake.forks) == forks and [c.name for c in sup.children] == ["api"]


def test_scaling_down_then_up_again_reuses_the_slot_and_is_ready():
    sup, fake = started()
    make_ready(sup)
    sup.step()
    first = child(sup, "worker-1")
    fake.obey = set()
    sup.signals += [TTOU, TTIN]
    sup.step()
    assert first.retired and first.pid in live_pids(sup)
    [new] = [c for c in sup.children if c.name == "worker-1" and not c.retired]
    make_ready(sup)
    fake.exit(first.pid, 0)
    sup.step()
    assert first not in sup.children and new.state == RUNNING
    assert sup._generation_ready()


def test_a_reload_goes_back_to_the_configured_number_of_workers():
    sup, fake, _ = reloading(WORKER_PROCESSES="1")
    sup.signals += [TTIN, TTIN]
    sup.step()
    assert sup.workers == 3
    sup.signals.append(HUP)
    sup.step()
    assert sup.workers == 1
    assert [c.name for c in sup.children if c.generation == sup.generation] == [
        "api",
        "worker-1",
    ]


# -- systemd watchdog -------------------------------------------------------------------------


def test_watchdog_pings_at_half_the_interval_only_while_children_are_healthy():
    sup, fake = started()
    sup.watchdog = 10.0
    sup.step()
    assert "WATCHDOG=1" not in fake.notes, "not before every child is up"
    make_ready(sup)
    sup.step()
    assert fake.notes.count("WATCHDOG=1") == 1
    fake.advance(4.9)
    sup.step()
    assert fake.notes.count("WATCHDOG=1") == 1
    fake.advance(0.1)
    sup.step()
    assert fake.notes.count("WATCHDOG=1") == 2
    assert sup._timeout() <= 5.0
    # A crashing child: no pings until it is back and ready.
    fake.exit(child(sup, "worker-1").pid, 1)
    for _ in range(10):
        fake.advance(1)
        sup.step()
    assert fake.notes.count("WATCHDOG=1") == 2
    make_ready(sup)
    sup.step()
    assert fake.notes.count("WATCHDOG=1") == 3


def test_no_watchdog_pings_without_watchdog_sec():
    sup, fake = started()
    make_ready(sup)
    fake.advance(100)
    sup.step()
    assert "WATCHDOG=1" not in fake.notes


def test_watchdog_interval_comes_from_systemds_environment(monkeypatch):
    monkeypatch.setenv("WATCHDOG_USEC", "30000000")
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    assert OS().watchdog_interval() == 30.0
    monkeypatch.setenv("WATCHDOG_PID", "1")  # meant for another process
    assert OS().watchdog_interval() is None
    monkeypatch.delenv("WATCHDOG_USEC")
    assert OS().watchdog_interval() is None


def test_watchdog_keeps_pinging_while_the_old_generation_serves_a_reload():
    sup, fake, _ = reloading()
    sup.watchdog = 10.0
    sup.signals.append(HUP)
    sup.step()
    assert not sup._generation_ready()
    for _ in range(3):
        fake.advance(5)
        sup.step()
    assert fake.notes.count("WATCHDOG=1") == 4  # at once, then every 5 s
