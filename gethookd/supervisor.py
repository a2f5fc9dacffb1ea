"""The master process: fork the role processes, keep the desired set alive, act on signals.

Modelled on gunicorn's arbiter: signal handlers only queue the signal and wake the
main loop, which does all the work. This module knows nothing of webhooks and never
imports gevent or psycopg2; each role is imported in its child, after fork.
"""

from __future__ import annotations

import errno
import logging
import os
import select
import signal
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass

from gethookd.config import Config, ConfigError

log = logging.getLogger("gethookd.supervisor")

# Exit codes: the contract between children, the master and the operator.
EXIT_OK = 0
EXIT_ERROR = 1
EXIT_CONFIG = 2
EXIT_BOOT = 3  # a child could not boot (or the database could not be prepared): do not restart

BACKOFF_FIRST = 0.5
BACKOFF_MAX = 30.0
HEALTHY_AFTER = 30.0  # a child that ran this long starts its backoff from scratch
READY_WAIT = 30.0  # on reload, old children retire when the new ones are ready or after this

STARTING, RUNNING, BACKOFF, STOPPING, EXITED, FATAL = (
    "starting",
    "running",
    "backoff",
    "stopping",
    "exited",
    "fatal",
)


@dataclass
class Child:
    """One slot of the desired set; its pid changes across restarts."""

    role: str
    index: int
    generation: int
    state: str = STARTING
    pid: int | None = None
    ready_fd: int | None = None
    restarts: int = 0
    started_at: float = 0.0
    next_start: float = 0.0

    @property
    def name(self) -> str:
        return f"{self.role}-{self.index}" if self.role == "worker" else self.role


class OS:
    """The operating system as the supervisor sees it; tests pass a fake."""

    def fork(self, child_main: Callable[[int], int]) -> tuple[int, int]:
        """Start child_main(ready_write_fd) in a child; returns (pid, ready_read_fd)."""
        read_fd, write_fd = os.pipe()
        pid = os.fork()
        if pid == 0:
            code = EXIT_ERROR
            try:
                os.close(read_fd)
                code = child_main(write_fd)
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else EXIT_ERROR
            except BaseException:
                log.exception("child crashed")
            finally:
                logging.shutdown()
                os._exit(code)
        os.close(write_fd)
        return pid, read_fd

    def kill(self, pid: int, sig: int) -> None:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass

    def reap(self) -> list[tuple[int, int]]:
        """(pid, exit code) of every child that has exited; a signal death is -signum."""
        done = []
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return done
            if pid == 0:
                return done
            done.append((pid, os.waitstatus_to_exitcode(status)))

    def now(self) -> float:
        return time.monotonic()


class Supervisor:
    def __init__(
        self,
        config: Config,
        reload_config: Callable[[], Config],
        roles: dict[str, Callable[[Config, int, Callable[[], None], int | None], int]],
        role: str = "all",
        system: OS | None = None,
    ) -> None:
        self.config = config
        self.reload_config = reload_config
        self.roles = roles
        self.role = role
        self.os = system or OS()
        self.children: list[Child] = []
        self.generation = 0
        self.mood = "running"  # running, stopping
        self.stop_deadline: float | None = None
        self.retire_at: float | None = None
        self.exit_code = EXIT_OK
        self.signals: list[int] = []
        self.listener: socket.socket | None = None
        self._wake_r, self._wake_w = -1, -1
        self._notified_ready = False

    # -- the desired set ---------------------------------------------------------------

    def desired(self) -> list[tuple[str, int]]:
        slots = []
        if self.role in ("all", "api"):
            slots.append(("api", 1))
        if self.role in ("all", "worker"):
            slots += [("worker", i) for i in range(1, self.config.WORKER_PROCESSES + 1)]
        return slots

    def start_generation(self) -> None:
        self.generation += 1
        for role, index in self.desired():
            child = Child(role, index, self.generation)
            self.children.append(child)
            self.spawn(child)

    def spawn(self, child: Child) -> None:
        config, listen_fd = self.config, self._listen_fd(child.role)
        target = self.roles[child.role]

        def child_main(ready_fd: int) -> int:
            self._become_child()

            def ready() -> None:
                try:
                    os.write(ready_fd, b"1")
                    os.close(ready_fd)
                except OSError:
                    pass

            return target(config, child.index, ready, listen_fd)

        child.pid, child.ready_fd = self.os.fork(child_main)
        child.state = STARTING
        child.started_at = self.os.now()
        log.info("started %s (pid %d, generation %d)", child.name, child.pid, child.generation)

    def _listen_fd(self, role: str) -> int | None:
        if role != "api":
            return None
        if self.listener is None:
            self.listener = bind(self.config.HOST, self.config.PORT)
        return self.listener.fileno()

    def _become_child(self) -> None:
        """Undo the master's process-wide state before the role takes over."""
        signal.set_wakeup_fd(-1)
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT, signal.SIGHUP, signal.SIGCHLD):
            signal.signal(sig, signal.SIG_DFL)
        for fd in (self._wake_r, self._wake_w):
            if fd >= 0:
                os.close(fd)
        for other in self.children:
            if other.ready_fd is not None:
                try:
                    os.close(other.ready_fd)
                except OSError:
                    pass

    # -- one turn of the main loop -------------------------------------------------------

    def step(self) -> bool:
        """Handle queued signals, reap, reconcile; False once everything has stopped."""
        while self.signals:
            self.handle_signal(self.signals.pop(0))
        for pid, code in self.os.reap():
            self.child_exited(pid, code)
        now = self.os.now()
        if self.mood == "stopping":
            live = [c for c in self.children if c.pid is not None]
            if not live:
                return False
            if self.stop_deadline is not None and now >= self.stop_deadline:
                for child in live:
                    log.warning(
                        "%s (pid %d) did not stop in time; killing it", child.name, child.pid
                    )
                    self.os.kill(child.pid, signal.SIGKILL)
                self.stop_deadline = None
            return True
        for child in self.children:
            if child.state == BACKOFF and now >= child.next_start:
                self.spawn(child)
        self._retire_old_generations(now)
        return True

    def mark_ready(self, fd: int) -> None:
        for child in self.children:
            if child.ready_fd == fd:
                child.state = RUNNING
                self._close_ready(child)
                log.info("%s (pid %d) is ready", child.name, child.pid)
        current = [c for c in self.children if c.generation == self.generation]
        if not self._notified_ready and all(c.state == RUNNING for c in current):
            self._notified_ready = True
            sd_notify("READY=1")

    def _forget_ready_fd(self, fd: int) -> None:
        for child in self.children:
            if child.ready_fd == fd:
                self._close_ready(child)

    def _close_ready(self, child: Child) -> None:
        if child.ready_fd is not None:
            try:
                os.close(child.ready_fd)
            except OSError:
                pass
            child.ready_fd = None

    def handle_signal(self, sig: int) -> None:
        if sig == signal.SIGHUP:
            self.reload()
        elif sig == signal.SIGTERM:
            self.stop(graceful=True)
        elif sig in (signal.SIGINT, signal.SIGQUIT):
            self.stop(graceful=False)

    def stop(self, graceful: bool) -> None:
        if self.mood == "stopping" and graceful:
            return
        log.info("%s shutdown requested", "graceful" if graceful else "fast")
        sd_notify("STOPPING=1")
        self.mood = "stopping"
        sig = signal.SIGTERM if graceful else signal.SIGQUIT
        for child in self.children:
            if child.pid is not None:
                child.state = STOPPING
                self.os.kill(child.pid, sig)
        grace = self.config.DRAIN_TIMEOUT + 10 if graceful else 10
        self.stop_deadline = self.os.now() + grace

    def reload(self) -> None:
        """New configuration, new generation; the old one retires once the new is ready."""
        if self.mood != "running":
            return
        try:
            new = self.reload_config()
        except ConfigError as exc:
            log.error("reload refused, keeping the running configuration: %s", exc)
            return
        sd_notify("RELOADING=1")
        log.info("reloading configuration (generation %d)", self.generation + 1)
        if (new.HOST, new.PORT) != (self.config.HOST, self.config.PORT) and self.listener:
            self.listener.close()  # children of the old generation keep their copy open
            self.listener = None
        self.config = new
        for child in self.children:
            if child.state == BACKOFF:  # never started: nothing to retire
                child.state = EXITED
        self.children = [c for c in self.children if c.state != EXITED]
        self._notified_ready = False
        self.start_generation()
        self.retire_at = self.os.now() + READY_WAIT

    def _retire_old_generations(self, now: float) -> None:
        old = [c for c in self.children if c.generation < self.generation and c.state != STOPPING]
        if not old:
            return
        current = [c for c in self.children if c.generation == self.generation]
        all_ready = all(c.state == RUNNING for c in current)
        if all_ready or (self.retire_at is not None and now >= self.retire_at):
            for child in old:
                if child.pid is None:
                    self.children.remove(child)
                    continue
                log.info(
                    "retiring %s (pid %d, generation %d)", child.name, child.pid, child.generation
                )
                child.state = STOPPING
                self.os.kill(child.pid, signal.SIGTERM)
            if all_ready:
                sd_notify("READY=1")

    def child_exited(self, pid: int, code: int) -> None:
        child = next((c for c in self.children if c.pid == pid), None)
        if child is None:
            return
        self._close_ready(child)
        child.pid = None
        how = f"signal {-code}" if code < 0 else f"exit code {code}"
        if child.state == STOPPING or self.mood == "stopping":
            log.info("%s stopped (%s)", child.name, how)
            child.state = EXITED
            if child.generation < self.generation:
                self.children.remove(child)
            return
        if code == EXIT_BOOT:
            log.error("%s could not boot (%s); stopping gethookd", child.name, how)
            child.state = FATAL
            self.exit_code = EXIT_BOOT
            self.stop(graceful=True)
            return
        now = self.os.now()
        if now - child.started_at >= HEALTHY_AFTER:
            child.restarts = 0
        delay = min(BACKOFF_MAX, BACKOFF_FIRST * 2**child.restarts)
        child.restarts += 1
        child.state = BACKOFF
        child.next_start = now + delay
        log.error("%s (pid %d) died (%s); restarting in %.1fs", child.name, pid, how, delay)

    # -- the real loop -------------------------------------------------------------------

    def run(self) -> int:
        self._install_signals()
        self.start_generation()
        while self.step():
            self._wait(self._timeout())
        self._close_listener()
        log.info("gethookd stopped")
        return self.exit_code

    def _timeout(self) -> float:
        now = self.os.now()
        waits = [1.0] + [max(0.0, c.next_start - now) for c in self.children if c.state == BACKOFF]
        return min(waits)

    def _wait(self, timeout: float) -> None:
        fds = [self._wake_r] + [c.ready_fd for c in self.children if c.ready_fd is not None]
        try:
            readable, _, _ = select.select(fds, [], [], timeout)
        except OSError as exc:
            if exc.errno == errno.EINTR:
                return
            raise
        for fd in readable:
            if fd == self._wake_r:
                try:
                    while os.read(self._wake_r, 4096):
                        pass
                except BlockingIOError:
                    pass
            else:
                try:
                    said = os.read(fd, 16)
                except OSError:
                    said = b""
                if said:
                    self.mark_ready(fd)
                else:  # the child closed its end without a word: it is exiting
                    self._forget_ready_fd(fd)

    def _install_signals(self) -> None:
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        signal.set_wakeup_fd(self._wake_w)

        def queue_signal(signum: int, _frame: object) -> None:
            self.signals.append(signum)

        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT, signal.SIGHUP):
            signal.signal(sig, queue_signal)
        # A handler (not SIG_DFL) so that a child's death writes to the wakeup fd.
        signal.signal(signal.SIGCHLD, lambda *_: None)

    def _close_listener(self) -> None:
        if self.listener is not None:
            self.listener.close()
            self.listener = None


def bind(host: str, port: int) -> socket.socket:
    """The API's listening socket, owned by the master so reloads drop no connection."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def sd_notify(message: str) -> None:
    """Tell systemd (Type=notify) what the daemon is doing; a no-op elsewhere."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return
    if address.startswith("@"):
        address = "\0" + address[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        try:
            sock.sendto(message.encode(), address)
        except OSError as exc:
            log.warning("sd_notify failed: %s", exc)
