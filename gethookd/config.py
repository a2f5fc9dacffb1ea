"""The settings table and the one loader that reads it.

Each setting is declared once; the config file, the environment, `check-config`
and the example file in conf/ are all driven by this table.
"""

from __future__ import annotations

import ipaddress
import math
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit


class ConfigError(Exception):
    """A setting has a value gethookd cannot use; the message names it."""


def _str(raw: str) -> str:
    return raw


def _port(raw: str) -> int:
    value = _int(raw)
    if not 1 <= value <= 65535:
        raise ValueError("expected a TCP port between 1 and 65535")
    return value


def _int(raw: str) -> int:
    try:
        return int(raw.strip())
    except ValueError:
        raise ValueError("expected a whole number") from None


def _positive_int(raw: str) -> int:
    value = _int(raw)
    if value < 1:
        raise ValueError("expected a whole number of at least 1")
    return value


def usable_cpus(cgroup_root: str = "/sys/fs/cgroup") -> int:
    """CPUs this process may run on: its affinity, capped by a container's CPU quota (a
    container sees the host's CPUs but may use only its share of them); at least 1."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    quota = _cgroup_cpu_quota(Path(cgroup_root))
    if quota is not None:
        cpus = min(cpus, math.ceil(quota))
    return max(1, cpus)


def _cgroup_cpu_quota(root: Path) -> float | None:
    """CPUs' worth of time per period the cgroup allows (v2 cpu.max, else v1), or None."""
    try:
        quota, period = (root / "cpu.max").read_text().split()
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:
        quota = int((root / "cpu" / "cpu.cfs_quota_us").read_text())
        period = int((root / "cpu" / "cpu.cfs_period_us").read_text())
    except (OSError, ValueError):
        return None
    return quota / period if quota > 0 and period > 0 else None


def _api_workers(raw: str) -> int | None:
    """A number of processes; `auto` is None (sized by the role at start: api_workers)."""
    if raw.strip().lower() == "auto":
        return None
    return _positive_int(raw)


def api_workers(config: Config, role: str) -> int:
    """API_WORKERS, `auto` sized for the role: an API process can keep a core busy, so an
    API-only instance gets one per usable CPU; one that also runs delivery processes (and
    often PostgreSQL) gets one per two, at least 1. On 2 CPUs a second API process only
    competed with those for CPU (end to end at 1,000/s, p50 12.6 ms against 9.6 ms with
    one; bench/RESULTS.md)."""
    if config.API_WORKERS is not None:
        return config.API_WORKERS
    cpus = usable_cpus()
    return cpus if role == "api" else max(1, cpus // 2)


def _non_negative_int(raw: str) -> int:
    value = _int(raw)
    if value < 0:
        raise ValueError("expected a whole number of at least 0")
    return value


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")


def _duration(raw: str) -> float:
    """Seconds, written `5`, `5s`, `250ms`, `2m`, `1h` or `7d`."""
    match = _DURATION.match(raw)
    if not match:
        raise ValueError("expected a duration such as 5, 5s, 250ms, 2m, 1h or 7d")
    number, unit = float(match.group(1)), match.group(2) or "s"
    seconds = number * {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}[unit]
    if seconds <= 0:
        raise ValueError("expected a duration greater than zero")
    return seconds


_SIZE = re.compile(r"^\s*(\d+)\s*(kB|MB|GB)\s*$", re.IGNORECASE)


def _buffer_size(raw: str) -> int | None:
    """Kilobytes, written `512MB`, `1GB` or `65536kB`; `auto` is None (sized at start)."""
    if raw.strip().lower() == "auto":
        return None
    match = _SIZE.match(raw)
    if not match:
        raise ValueError("expected auto or a size such as 256MB or 1GB")
    factor = {"kb": 1, "mb": 1024, "gb": 1024 * 1024}[match.group(2).lower()]
    kilobytes = int(match.group(1)) * factor
    if kilobytes < 1024:
        raise ValueError("expected at least 1MB")
    return kilobytes


def parse_duration(raw: str) -> float:
    """A duration as the settings write it (for command-line options)."""
    return _duration(raw)


def _url(raw: str) -> str:
    parts = urlsplit(raw.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError("expected an http:// or https:// URL")
    return raw.strip().rstrip("/")


def _database_url(raw: str) -> str:
    parts = urlsplit(raw.strip())
    if parts.scheme not in ("postgres", "postgresql"):
        raise ValueError("expected a postgresql:// URL")
    return raw.strip()


def _hex_key(raw: str) -> str:
    value = raw.strip()
    if not re.fullmatch(r"[0-9a-fA-F]{64}", value):
        raise ValueError(
            "expected exactly 64 hexadecimal characters (32 bytes for AES-256); "
            "generate one with `gethookd keygen`"
        )
    return value.lower()


def _networks(raw: str) -> tuple:
    """CIDRs (or single addresses), comma or space separated."""
    networks = []
    for item in re.split(r"[\s,]+", raw.strip()):
        if item:
            try:
                networks.append(ipaddress.ip_network(item, strict=False))
            except ValueError:
                raise ValueError(f"{item!r} is not a network such as 10.0.0.0/8") from None
    return tuple(networks)


def _choice(*choices: str) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        value = raw.strip().lower()
        if value not in choices:
            raise ValueError("expected one of " + ", ".join(choices))
        return value

    return parse


@dataclass(frozen=True)
class Setting:
    name: str
    parse: Callable[[str], Any]
    default: str | None
    help: str
    secret: bool = False


SETTINGS: tuple[Setting, ...] = (
    Setting(
        "DATABASE_URL",
        _database_url,
        None,
        "PostgreSQL URL. Unset: a private embedded PostgreSQL in GETHOOKD_DATA_DIR.",
        secret=True,
    ),
    Setting(
        "ENCRYPTION_KEY",
        _hex_key,
        None,
        "64 hex chars (AES-256) encrypting secrets at rest. Required with DATABASE_URL.",
        secret=True,
    ),
    Setting(
        "ENCRYPTION_KEY_PREVIOUS",
        _hex_key,
        None,
        "During a key rotation: the old ENCRYPTION_KEY, still decrypting values not yet "
        "re-encrypted by `gethookd rotate-key`. Unset it once check-config counts none.",
        secret=True,
    ),
    Setting(
        "DATABASE_WAIT",
        _duration,
        "30s",
        "How long startup waits for the database to accept connections (then exit code 3).",
    ),
    Setting("HOST", _str, "0.0.0.0", "Address the API listens on."),
    Setting("PORT", _port, "8080", "TCP port the API listens on."),
    Setting("BASE_URL", _url, None, "Public URL of this gateway; ingest URLs are built from it."),
    Setting(
        "MIGRATIONS_DIR", _str, None, "Directory of numbered .sql migrations (default: bundled)."
    ),
    Setting(
        "SIGNUP",
        _choice("open", "closed"),
        "open",
        "closed: /v1/auth/register and POST /v1/accounts answer 403 (the CLI still creates).",
    ),
    Setting(
        "METRICS_TOKEN",
        _str,
        None,
        "If set, GET /metrics needs Authorization: Bearer <this token> (else it is open).",
        secret=True,
    ),
    Setting("CORS_ORIGIN", _str, "*", "Value of Access-Control-Allow-Origin on API answers."),
    Setting(
        "CONSOLE_SESSION_TTL",
        _duration,
        "12h",
        "How long a console sign-in lasts (the session cookie's Max-Age; no sliding renewal).",
    ),
    Setting(
        "WORKER_POLL_INTERVAL",
        _duration,
        "5s",
        "Longest a delivery process waits before looking for due deliveries.",
    ),
    Setting(
        "WORKER_MAX_CONCURRENCY",
        _positive_int,
        "10",
        "Deliveries one delivery process sends at once (greenlets).",
    ),
    Setting(
        "DESTINATION_MAX_IN_FLIGHT",
        _non_negative_int,
        "0",
        "Most deliveries of one destination a delivery process sends at once, so a slow "
        "destination cannot take every greenlet (0: a quarter of WORKER_MAX_CONCURRENCY, "
        "at least 1).",
    ),
    Setting(
        "CIRCUIT_FAILURE_THRESHOLD",
        _positive_int,
        "10",
        "Failed attempts in a row after which a destination's circuit opens (its deliveries "
        "wait, unattempted).",
    ),
    Setting(
        "CIRCUIT_COOLDOWN",
        _duration,
        "30s",
        "How long an open circuit waits before one probe delivery; doubles per re-open.",
    ),
    Setting("CIRCUIT_COOLDOWN_MAX", _duration, "15m", "Longest cool-down of an open circuit."),
    Setting(
        "DESTINATION_DISABLE_AFTER",
        _duration,
        "5d",
        "A destination failing continuously this long is disabled (re-enable: PATCH active=true).",
    ),
    Setting("DELIVERY_TIMEOUT", _duration, "30s", "Upper bound on one delivery attempt."),
    Setting(
        "LEASE_GRACE",
        _duration,
        "30s",
        "Added to DELIVERY_TIMEOUT to form the lease after which a dead worker's delivery "
        "is claimed again.",
    ),
    Setting(
        "API_WORKERS",
        _api_workers,
        "auto",
        "gunicorn worker processes serving the API; auto: one per CPU this process may use "
        "(its affinity and a container's CPU quota) with --role api, else one per two, at "
        "least 1.",
    ),
    Setting(
        "API_THREADS",
        _positive_int,
        "32",
        "Threads per API worker process (gthread): concurrent requests each worker can hold "
        "while their ingests wait for a group commit.",
    ),
    Setting(
        "API_WORKER_CLASS",
        _choice("httptools", "gevent", "gthread"),
        "httptools",
        "gunicorn worker class of the API: httptools (gevent greenlets, requests parsed in C "
        "by httptools: the fastest), gevent (gunicorn's own gevent worker) or gthread "
        "(API_THREADS threads).",
    ),
    Setting("WORKER_PROCESSES", _positive_int, "1", "Delivery processes per instance."),
    Setting(
        "GETHOOKD_DATA_DIR",
        _str,
        None,
        "Where the embedded database and its key live (default: the user data directory).",
    ),
    Setting(
        "EMBEDDED_SHARED_BUFFERS",
        _buffer_size,
        "auto",
        "shared_buffers of the embedded PostgreSQL, e.g. 256MB or 1GB; auto: a quarter of "
        "the memory this machine or container may use, between 128MB and 1GB.",
    ),
    Setting(
        "RETRY_BASE_DELAY", _duration, "10s", "First retry delay; doubles per attempt (jittered)."
    ),
    Setting("RETRY_MAX_DELAY", _duration, "1h", "Longest delay between two attempts."),
    Setting(
        "DEFAULT_MAX_ATTEMPTS", _positive_int, "6", "Attempts per delivery unless a route says."
    ),
    Setting(
        "MAX_INGEST_BYTES", _positive_int, "1048576", "Largest webhook body accepted (413 above)."
    ),
    Setting(
        "DEDUP_WINDOW",
        _duration,
        "7d",
        "How long a provider's delivery id is remembered: a repeat within it is not stored.",
    ),
    Setting(
        "DRAIN_TIMEOUT",
        _duration,
        "60s",
        "On SIGTERM, how long in-flight deliveries and requests may take to finish.",
    ),
    Setting(
        "ALLOWED_DESTINATION_NETWORKS",
        _networks,
        None,
        "CIDRs destinations may reach beyond public addresses (e.g. 10.0.0.0/8, ::1); "
        "without DATABASE_URL loopback and private networks are allowed by default.",
    ),
    Setting(
        "SECRET_ROTATION_GRACE",
        _duration,
        "24h",
        "After rotate-secret, how long deliveries are also signed with the previous secret.",
    ),
    Setting(
        "RETENTION_DAYS",
        _positive_int,
        "30",
        "Days finished events, their deliveries and attempts are kept, for accounts without "
        "their own retention_days; older ones are deleted by a background job.",
    ),
    Setting(
        "RETENTION_BATCH_SIZE",
        _positive_int,
        "500",
        "Expired events the purge deletes per transaction (with their deliveries and attempts).",
    ),
    Setting(
        "RETENTION_PAUSE",
        _duration,
        "50ms",
        "Rest between two purge batches, at least; never shorter than the last batch took.",
    ),
    Setting("LOG_LEVEL", _choice("debug", "info", "warning", "error"), "info", "Log verbosity."),
    Setting("LOG_FORMAT", _choice("text", "json"), "text", "Log lines as text or JSON."),
)

_BY_NAME = {s.name: s for s in SETTINGS}


@dataclass(frozen=True)
class Config:
    values: Mapping[str, Any]
    source: Mapping[str, str] = field(default_factory=dict)
    config_file: str | None = None

    def __getattr__(self, name: str) -> Any:
        try:
            return self.values[name.upper()]
        except KeyError:
            raise AttributeError(name) from None

    @property
    def embedded(self) -> bool:
        return not self.values["DATABASE_URL"]

    @property
    def lease_seconds(self) -> float:
        return self.values["DELIVERY_TIMEOUT"] + self.values["LEASE_GRACE"]

    @property
    def destination_max_in_flight(self) -> int:
        """DESTINATION_MAX_IN_FLIGHT, or by default a quarter of the process's greenlets:
        a destination that hangs then holds at most a quarter of them, and a healthy one
        still gets several at once (at 10 greenlets: 2)."""
        explicit = self.values["DESTINATION_MAX_IN_FLIGHT"]
        if explicit:
            return explicit
        return max(1, self.values["WORKER_MAX_CONCURRENCY"] // 4)

    def with_values(self, **overrides: Any) -> Config:
        return Config({**self.values, **overrides}, self.source, self.config_file)

    def masked(self) -> dict[str, str]:
        """Every setting as text, secrets hidden, for `check-config` and logs."""
        shown: dict[str, str] = {}
        for setting in SETTINGS:
            value = self.values[setting.name]
            if setting.parse in (_buffer_size, _api_workers) and value is None:
                shown[setting.name] = "auto"
            elif setting.parse is _buffer_size:
                shown[setting.name] = f"{value}kB"
            elif value is None:
                shown[setting.name] = "(unset)"
            elif setting.name == "DATABASE_URL":
                shown[setting.name] = mask_url(value)
            elif setting.secret:
                shown[setting.name] = "****"
            elif setting.parse is _duration:
                shown[setting.name] = f"{value:g}s"
            elif isinstance(value, tuple):
                shown[setting.name] = ", ".join(str(v) for v in value)
            else:
                shown[setting.name] = str(value)
        return shown


def mask_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(":" + parts.password + "@", ":****@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def read_config_file(path: str, lines: dict[str, int] | None = None) -> dict[str, str]:
    """KEY=VALUE lines, `#` comments; the file is data, never code.

    `lines`, if given, receives the line number of each setting (for error messages).
    """
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
    values: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"{path}:{number}: expected KEY=VALUE, got {line!r}")
        if key not in _BY_NAME:
            raise ConfigError(f"{path}:{number}: unknown setting {key}")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[key] = value
        if lines is not None:
            lines[key] = number
    return values


def load(config_file: str | None = None, env: Mapping[str, str] | None = None) -> Config:
    """Defaults, then the file, then the environment; the first bad value stops it."""
    env = os.environ if env is None else env
    config_file = config_file or env.get("GETHOOKD_CONFIG") or None
    lines: dict[str, int] = {}
    from_file = read_config_file(config_file, lines) if config_file else {}
    values: dict[str, Any] = {}
    source: dict[str, str] = {}
    for setting in SETTINGS:
        raw, origin = setting.default, "default"
        if setting.name in from_file:
            raw, origin = from_file[setting.name], "file"
        if env.get(setting.name, "") != "":
            raw, origin = env[setting.name], "environment"
        if raw is None:
            values[setting.name] = None
        else:
            try:
                values[setting.name] = setting.parse(raw)
            except ValueError as exc:
                shown = "****" if setting.secret else repr(raw)
                if origin == "file":
                    raise ConfigError(
                        f"{config_file}:{lines[setting.name]}: {setting.name}={shown} "
                        f"is invalid: {exc}"
                    ) from None
                raise ConfigError(
                    f"{setting.name}={shown} (from {origin}) is invalid: {exc}"
                ) from None
        source[setting.name] = origin
    if values["DATABASE_URL"] and not values["ENCRYPTION_KEY"]:
        raise ConfigError(
            "ENCRYPTION_KEY is required when DATABASE_URL is set: 64 hex characters "
            "(generate one with `gethookd keygen`)"
        )
    if (
        values["ENCRYPTION_KEY_PREVIOUS"]
        and values["ENCRYPTION_KEY_PREVIOUS"] == values["ENCRYPTION_KEY"]
    ):
        raise ConfigError("ENCRYPTION_KEY_PREVIOUS must differ from ENCRYPTION_KEY")
    if values["BASE_URL"] is None:
        values["BASE_URL"] = f"http://localhost:{values['PORT']}"
    if values["GETHOOKD_DATA_DIR"] is None:
        import platformdirs

        values["GETHOOKD_DATA_DIR"] = platformdirs.user_data_dir("gethookd")
    return Config(values, source, config_file)


def example_file() -> str:
    """The text of conf/gethookd.conf.example, generated from the table."""
    lines = [
        "# gethookd configuration: KEY=VALUE lines; the environment overrides this file.",
        "# Load it with `gethookd run --config FILE` or GETHOOKD_CONFIG=FILE.",
        "",
    ]
    for setting in SETTINGS:
        lines.append(f"# {setting.help}")
        lines.append(f"#{setting.name}={setting.default or ''}")
        lines.append("")
    return "\n".join(lines)
