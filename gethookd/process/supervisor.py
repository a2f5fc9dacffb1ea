"""The master process: fork the role processes, keep the desired set alive, act on signals.

Modelled on gunicorn's arbiter: signal handlers only record the signal and wake the
main loop, which does all the work. Everything the loop asks of the operating system
goes through `OS` (fork, kill, reap, clock, listening socket, readiness pipes, systemd),
so `Supervisor.step` is tested with a fake. This module knows nothing of webhooks and
never imports gevent or psycopg2; each role is imported in its child, after fork.
"""

from __future__ import annotations

import ctypes
import logging
import os
import select
import signal
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass

from gethookd.config import Config
from gethookd.process import metrics_dir

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
FAST_STOP_GRACE = 10.0  # after SIGINT/SIGQUIT, children still alive this long are killed
STOP_GRACE = 10.0  # added to DRAIN_TIMEOUT before a graceful stop turns into SIGKILL
MAX_WORKER_PROCESSES = 64  # SIGTTIN never grows the delivery processes beyond this

# The signals the master handles; blocked across fork so a child never runs its handlers.
RECORDED = (
    signal.SIGTERM,
    signal.SIGINT,
    signal.SIGQUIT,
    signal.SIGHUP,
    signal.SIGTTIN,
    signal.SIGTTOU,
)
HANDLED = (*RECORDED, signal.SIGCHLD)

STARTING, RUNNING, BACKOFF, STOPPING, EXITED, FATAL = (
    "starting",
    "running",
    "backoff",
    "stopping",
    "exited",
    "fatal",
)

Role = Callable[[Config, int, Callable[[], None], int | None], int]


def backoff_delay(restarts: int) -> float:
    """0.5, 1, 2, 4, ... seconds, capped at BACKOFF_MAX."""
    return min(BACKOFF_MAX, BACKOFF_FIRST * 2 ** min(restarts, 16))


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
    kill_at: float | None = None  # SIGKILL if still alive then (set when asked to stop)
    retired: bool = False  # removed from the desired set by SIGTTOU; draining

    @property
    def name(self) -> str:
        return f"{self.role}-{self.index}" if self.role == "worker" else self.role


class OS:
    """The operating system as the supervisor sees it; tests pass a fake."""

    def __init__(self) -> None:
        self._wake_r = self._wake_w = -1

    def fork(self, child_main: Callable[[int], int]) -> tuple[int, int]:
        """Start child_main(ready_write_fd) in a child; returns (pid, ready_read_fd).

        The child starts with default signal dispositions: the master's handlers and
        wakeup pipe are undone before any signal can reach it. It leads a process group
        of its own: a terminal's Ctrl-C (SIGINT to the foreground group) reaches only the
        master, which then stops each child exactly once; and `kill_group` can remove a
        child together with everything it started (gunicorn's workers).
        """
        read_fd, write_fd = os.pipe()
        parent = os.getpid()
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, HANDLED)
        try:
            pid = os.fork()
        except BaseException:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
            os.close(read_fd)
            os.close(write_fd)
            raise
        if pid == 0:
            code = EXIT_ERROR
            try:
                _own_group(0)
                self._become_child()
                _die_with(parent)
                signal.pthread_sigmask(signal.SIG_SETMASK, mask)
                os.close(read_fd)
                code = child_main(write_fd)
            except SystemExit as exc:
                code = EXIT_OK if exc.code is None else exc.code
                code = code if isinstance(code, int) else EXIT_ERROR
            except BaseException:
                log.exception("child crashed")
            finally:
                logging.shutdown()
                os._exit(code)
        _own_group(pid)  # also from this side: no window where a group signal reaches it
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        os.close(write_fd)
        return pid, read_fd

    def _become_child(self) -> None:
        signal.set_wakeup_fd(-1)
        for sig in HANDLED:
            signal.signal(sig, signal.SIG_DFL)
        # A child's group is not the terminal's foreground group: with `stty tostop` its log
        # writes would raise SIGTTOU, whose default action stops the process.
        for sig in (signal.SIGTTIN, signal.SIGTTOU):
            signal.signal(sig, signal.SIG_IGN)
        for fd in (self._wake_r, self._wake_w):
            if fd >= 0:
                os.close(fd)
        self._wake_r = self._wake_w = -1

    def kill(self, pid: int, sig: int) -> None:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass

    def kill_group(self, pid: int, sig: int) -> None:
        """Signal the process group `pid` leads (the child and all it forked)."""
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            pass
        except PermissionError:
            self.kill(pid, sig)

    def watchdog_interval(self) -> float | None:
        """systemd's WatchdogSec= (WATCHDOG_USEC, meant for this pid), in seconds; or None."""
        usec = os.environ.get("WATCHDOG_USEC")
        target = os.environ.get("WATCHDOG_PID")
        if not usec or (target and target != str(os.getpid())):
            return None
        try:
            seconds = int(usec) / 1_000_000
        except ValueError:
            return None
        return seconds if seconds > 0 else None

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
            metrics_dir.process_exited(pid)

    def restarted(self, role: str) -> None:
        """Count a restart for /metrics (prometheus_client holds no gevent or psycopg2)."""
        from gethookd import metrics

        metrics.RESTARTS.labels(role).inc()

    def now(self) -> float:
        return time.monotonic()

    def listen(self, host: str, port: int) -> int:
        """Bind the API's listening socket; returns its file descriptor."""
        return bind(host, port).detach()

    def close(self, fd: int) -> None:
        try:
            os.close(fd)
        except OSError:
            pass

    def install_signals(self, record: Callable[[int], None]) -> None:
        """Handlers only record the signal; the wakeup pipe interrupts `wait`."""
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        signal.set_wakeup_fd(self._wake_w)
        for sig in RECORDED:
            signal.signal(sig, lambda signum, _frame: record(signum))
        # A handler (not SIG_DFL) so that a child's death writes to the wakeup fd.
        signal.signal(signal.SIGCHLD, lambda *_: None)

    def wait(self, fds: list[int], timeout: float) -> list[tuple[int, bytes]]:
        """Sleep until a signal, a readiness pipe or the timeout; returns what the pipes said.

        b"" means the child closed its end without a word (it is exiting).
        """
        watch = [fd for fd in [self._wake_r, *fds] if fd >= 0]
        try:
            readable, _, _ = select.select(watch, [], [], timeout)
        except InterruptedError:
            return []
        said = []
        for fd in readable:
            if fd == self._wake_r:
                try:
                    while os.read(fd, 4096):
                        pass
                except BlockingIOError:
                    pass
                continue
            try:
                data = os.read(fd, 64)
            except OSError:
                data = b""
            said.append((fd, data))
        return said

    def notify(self, message: str) -> None:
        sd_notify(message)


class Supervisor:
    def __init__(
        self,
        config: Config,
        reload_config: Callable[[], Config],
        roles: dict[str, Role],
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
        self.retire_at: float | None = None
        self.exit_code = EXIT_OK
        self.signals: list[int] = []
        self.listen_fd: int | None = None
        self._notified_ready = False
        # Delivery processes wanted now: WORKER_PROCESSES, moved by SIGTTIN/SIGTTOU until the
        # next reload (which goes back to the configuration).
        self.workers = config.WORKER_PROCESSES
        self.watchdog: float | None = None  # systemd's WatchdogSec, in seconds
        self.next_ping = 0.0

    # -- the desired set ---------------------------------------------------------------

    def desired(self) -> list[tuple[str, int]]:
        slots = []
        if self.role in ("all", "api"):
            slots.append(("api", 1))
        if self.role in ("all", "worker"):
            slots += [("worker", i) for i in range(1, self.workers + 1)]
        return slots

    @property
    def serves_api(self) -> bool:
        return self.role in ("all", "api")

    def start(self) -> bool:
        """Open the listening socket and start the first generation; False if we cannot."""
        if self.serves_api:
            try:
                self.listen_fd = self.os.listen(self.config.HOST, self.config.PORT)
            except OSError as exc:
                log.error(
                    "cannot listen on %s:%s: %s", self.config.HOST, self.config.PORT, exc.strerror
                )
                self.exit_code = EXIT_BOOT
                return False
        self.start_generation()
        return True

    def start_generation(self) -> None:
        self.generation += 1
        self._notified_ready = False
        for role, index in self.desired():
            child = Child(role, index, self.generation)
            self.children.append(child)
            self.spawn(child)

    def spawn(self, child: Child) -> None:
        config = self.config
        listen_fd = self.listen_fd if child.role == "api" else None
        target = self.roles[child.role]

        def child_main(ready_fd: int) -> int:
            self._become_child(child)

            def ready() -> None:
                try:
                    os.write(ready_fd, b"1")
                    os.close(ready_fd)
                except OSError:
                    pass

            return target(config, child.index, ready, listen_fd)

        child.state = STARTING
        child.kill_at = None
        child.started_at = self.os.now()
        try:
            child.pid, child.ready_fd = self.os.fork(child_main)
        except OSError as exc:
            log.error("cannot start %s: %s", child.name, exc)
            child.pid = None
            self._backoff(child)
            return
        log.info("started %s (pid %d, generation %d)", child.name, child.pid, child.generation)

    def _become_child(self, me: Child) -> None:
        """In the new child: let go of what belongs to the master and the other children."""
        for other in self.children:
            if other.ready_fd is not None:
                self.os.close(other.ready_fd)
        if self.listen_fd is not None and me.role != "api":
            self.os.close(self.listen_fd)
        # Only the master talks to systemd (gunicorn would announce READY=1 on its own).
        for name in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"):
            os.environ.pop(name, None)

    # -- one turn of the main loop -------------------------------------------------------

    def step(self) -> bool:
        """Handle recorded signals, reap, reconcile; False once everything has stopped."""
        while self.signals:
            self.handle_signal(self.signals.pop(0))
        for pid, code in self.os.reap():
            self.child_exited(pid, code)
        now = self.os.now()
        for child in self.children:
            if child.pid is not None and child.kill_at is not None and now >= child.kill_at:
                log.warning(
                    "%s (pid %d) did not stop in time; killing it and its processes",
                    child.name,
                    child.pid,
                )
                # Still unreaped, so the pid (and its group) cannot have been reused.
                self.os.kill_group(child.pid, signal.SIGKILL)
                child.kill_at = None
        if self.mood == "stopping":
            return any(c.pid is not None for c in self.children)
        for child in self.children:
            if child.state == BACKOFF and now >= child.next_start:
                self.spawn(child)
        ready = self._generation_ready()
        if ready and not self._notified_ready:
            self._notified_ready = True
            self.os.notify("READY=1")
        self._retire_old_generations(now, ready)
        # During a reload the old generation serves until the new one is ready.
        old = [c for c in self.children if c.generation < self.generation]
        serving = bool(old) and all(c.state == RUNNING for c in old)
        self._ping_watchdog(now, ready or serving)
        return True

    def _ping_watchdog(self, now: float, healthy: bool) -> None:
        """WATCHDOG=1 at half of WatchdogSec, only while every current child is running.

        A child that keeps crashing (or a master stuck in its loop) stops the pings, and
        systemd restarts the service as WatchdogSec= and Restart= say.
        """
        if self.watchdog is None or now < self.next_ping or not healthy:
            return
        self.os.notify("WATCHDOG=1")
        self.next_ping = now + self.watchdog / 2

    def _generation_ready(self) -> bool:
        current = [c for c in self.children if c.generation == self.generation and not c.retired]
        return all(c.state == RUNNING for c in current)

    def child_ready(self, fd: int, said: bytes) -> None:
        """A readiness pipe spoke: a byte means ready, end-of-file means it is exiting."""
        child = next((c for c in self.children if c.ready_fd == fd), None)
        if child is None:
            return
        self._close_ready(child)
        if said and child.state == STARTING:
            child.state = RUNNING
            log.info("%s (pid %d) is ready", child.name, child.pid)

    def _close_ready(self, child: Child) -> None:
        if child.ready_fd is not None:
            self.os.close(child.ready_fd)
            child.ready_fd = None

    def handle_signal(self, sig: int) -> None:
        if sig == signal.SIGHUP:
            self.reload()
        elif sig == signal.SIGTTIN:
            self.scale(+1)
        elif sig == signal.SIGTTOU:
            self.scale(-1)
        elif sig == signal.SIGTERM:
            self.stop(graceful=True)
        elif sig in (signal.SIGINT, signal.SIGQUIT):
            self.stop(graceful=False)

    def stop(self, graceful: bool) -> None:
        """SIGTERM: children drain (bounded); SIGINT/SIGQUIT: children stop at once."""
        if self.mood == "stopping" and graceful:
            return
        log.info("%s shutdown requested", "graceful" if graceful else "fast")
        if self.mood != "stopping":
            self.os.notify("STOPPING=1")
        self.mood = "stopping"
        sig = signal.SIGTERM if graceful else signal.SIGQUIT
        grace = self.config.DRAIN_TIMEOUT + STOP_GRACE if graceful else FAST_STOP_GRACE
        deadline = self.os.now() + grace
        for child in self.children:
            if child.pid is not None:
                self._ask_to_stop(child, sig, deadline)

    def _ask_to_stop(self, child: Child, sig: int, deadline: float) -> None:
        child.state = STOPPING
        child.kill_at = deadline if child.kill_at is None else min(child.kill_at, deadline)
        self.os.kill(child.pid, sig)

    def scale(self, by: int) -> None:
        """SIGTTIN: one more delivery process; SIGTTOU: one fewer, drained (SIGTERM)."""
        if self.mood != "running":
            return
        if self.role == "api":
            log.warning("SIGTTIN/SIGTTOU ignored: this instance runs no delivery process")
            return
        wanted = self.workers + by
        if not 0 <= wanted <= MAX_WORKER_PROCESSES:
            log.warning(
                "delivery processes stay at %d (between 0 and %d)",
                self.workers,
                MAX_WORKER_PROCESSES,
            )
            return
        self.workers = wanted
        if by > 0:
            child = Child("worker", wanted, self.generation)
            self.children.append(child)
            log.info("scaling up to %d delivery process(es)", wanted)
            self.spawn(child)
            return
        log.info("scaling down to %d delivery process(es)", wanted)
        deadline = self.os.now() + self.config.DRAIN_TIMEOUT + STOP_GRACE
        for child in [c for c in self.children if c.role == "worker" and c.index > wanted]:
            if child.generation != self.generation or child.retired:
                continue
            if child.pid is None:  # waiting out a backoff: nothing to drain
                self.children.remove(child)
                continue
            log.info("retiring %s (pid %d)", child.name, child.pid)
            child.retired = True
            self._ask_to_stop(child, signal.SIGTERM, deadline)

    def reload(self) -> None:
        """New configuration, new generation; the old one retires once the new is ready."""
        if self.mood != "running":
            return
        try:
            new = self.reload_config()
        except Exception as exc:  # a bad file must never take the running daemon down
            log.error("reload refused, keeping the running configuration: %s", exc)
            return
        address = (new.HOST, new.PORT)
        if self.serves_api and address != (self.config.HOST, self.config.PORT):
            try:
                fd = self.os.listen(*address)
            except OSError as exc:
                log.error(
                    "reload refused, keeping the running configuration: cannot listen on %s:%s: %s",
                    *address,
                    exc.strerror,
                )
                return
            if self.listen_fd is not None:
                self.os.close(self.listen_fd)  # the old API keeps its own copy until it retires
            self.listen_fd = fd
        self.os.notify(f"RELOADING=1\nMONOTONIC_USEC={int(self.os.now() * 1_000_000)}")
        log.info("reloading configuration (generation %d)", self.generation + 1)
        self.config = new
        self.workers = new.WORKER_PROCESSES
        # Slots waiting out a backoff were never started: nothing to retire, just forget them.
        self.children = [c for c in self.children if c.pid is not None]
        self.start_generation()
        self.retire_at = self.os.now() + READY_WAIT

    def _retire_old_generations(self, now: float, ready: bool) -> None:
        old = [c for c in self.children if c.generation < self.generation and c.state != STOPPING]
        if not old:
            self.retire_at = None
            return
        if not ready and (self.retire_at is None or now < self.retire_at):
            return
        self.retire_at = None
        if not ready:
            log.warning(
                "generation %d is not ready after %.0fs; retiring the old one anyway",
                self.generation,
                READY_WAIT,
            )
        deadline = now + self.config.DRAIN_TIMEOUT + STOP_GRACE
        for child in old:
            if child.pid is None:
                self.children.remove(child)
                continue
            log.info("retiring %s (pid %d, generation %d)", child.name, child.pid, child.generation)
            self._ask_to_stop(child, signal.SIGTERM, deadline)
        if not ready and not self._notified_ready:
            self._notified_ready = True
            self.os.notify("READY=1")  # serving, if not with the whole new generation

    def child_exited(self, pid: int, code: int) -> None:
        child = next((c for c in self.children if c.pid == pid), None)
        if child is None:
            return
        self._close_ready(child)
        child.pid = None
        child.kill_at = None
        how = f"signal {-code}" if code < 0 else f"exit code {code}"
        if child.state == STOPPING or self.mood == "stopping":
            log.info("%s stopped (%s)", child.name, how)
            child.state = EXITED
            if child.generation < self.generation or (self.mood == "running" and child.retired):
                self.children.remove(child)
            return
        if code == EXIT_BOOT:
            log.error("%s could not boot (%s); stopping gethookd", child.name, how)
            child.state = FATAL
            self.exit_code = EXIT_BOOT
            self.stop(graceful=True)
            return
        if child.generation < self.generation:
            log.warning(
                "%s of the replaced generation %d died (%s); not restarted",
                child.name,
                child.generation,
                how,
            )
            self.children.remove(child)
            return
        delay = self._backoff(child)
        log.error("%s (pid %d) died (%s); restarting in %.1fs", child.name, pid, how, delay)
        self.os.restarted(child.role)

    def _backoff(self, child: Child) -> float:
        now = self.os.now()
        if now - child.started_at >= HEALTHY_AFTER:
            child.restarts = 0
        delay = backoff_delay(child.restarts)
        child.restarts += 1
        child.state = BACKOFF
        child.next_start = now + delay
        return delay

    # -- the real loop -------------------------------------------------------------------

    def run(self) -> int:
        self.os.install_signals(self.signals.append)
        self.watchdog = self.os.watchdog_interval()
        if self.start():
            while self.step():
                for fd, said in self.os.wait(self._ready_fds(), self._timeout()):
                    self.child_ready(fd, said)
        if self.listen_fd is not None:
            self.os.close(self.listen_fd)
            self.listen_fd = None
        log.info("gethookd stopped")
        return self.exit_code

    def _ready_fds(self) -> list[int]:
        return [c.ready_fd for c in self.children if c.ready_fd is not None]

    def _timeout(self) -> float:
        now = self.os.now()
        moments = [c.next_start for c in self.children if c.state == BACKOFF]
        moments += [c.kill_at for c in self.children if c.kill_at is not None]
        if self.retire_at is not None:
            moments.append(self.retire_at)
        if self.watchdog is not None:
            moments.append(self.next_ping)
        return max(0.0, min([1.0] + [m - now for m in moments]))


PR_SET_PDEATHSIG = 1


def _own_group(pid: int) -> None:
    """Make `pid` (0: this process) the leader of a new process group."""
    try:
        os.setpgid(pid, pid)
    except OSError:  # already done by the other side, or the child is already gone
        pass


def _die_with(parent: int) -> None:
    """Have the kernel send this child SIGTERM if the master dies, even by SIGKILL.

    Otherwise an orphaned delivery process would go on claiming work under an old
    configuration (gunicorn's workers already watch their parent; its arbiter does not).
    Linux only; elsewhere a no-op.
    """
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # the master died before we asked: same outcome
        os.kill(os.getpid(), signal.SIGTERM)


def bind(host: str, port: int) -> socket.socket:
    """The API's listening socket, owned by the master so reloads drop no connection."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(2048)
    except OSError:
        sock.close()
        raise
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
