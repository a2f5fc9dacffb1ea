"""`gethookd status`: the running processes (from their titles) and the queue's state.

Processes are found by their titles, which the master and its children set
(`gethookd: master (ROLE)`, `gethookd: delivery worker N`, `gunicorn: master
[gethookd-api]`): no pid file to go stale, and every gateway of this user on the
machine is listed. Reads /proc, so the process part is Linux only (elsewhere: empty).
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from gethookd.db import Database

MASTER_TITLE = "gethookd: master"
DEAD_LETTER_HOURS = 24


def _cmdline(pid: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return ""
    return raw.replace(b"\0", b" ").decode(errors="replace").strip()


def _stat(pid: int) -> tuple[int, float] | None:
    """(parent pid, start time in seconds since boot) from /proc/PID/stat."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()
    return int(fields[1]), int(fields[19]) / os.sysconf("SC_CLK_TCK")


def _uptime() -> float:
    try:
        return float(Path("/proc/uptime").read_text().split()[0])
    except OSError:
        return 0.0


def processes() -> list[dict[str, Any]]:
    """Every gethookd master of this user, with its children (and theirs) by title."""
    if not Path("/proc/self/stat").exists():
        return []
    me = os.getuid()
    table: dict[int, tuple[int, float, str]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if entry.stat().st_uid != me:
                continue
        except OSError:
            continue
        pid = int(entry.name)
        stat = _stat(pid)
        title = _cmdline(pid)
        if stat and title:
            table[pid] = (stat[0], stat[1], title)
    booted = time.time() - _uptime()

    def node(pid: int) -> dict[str, Any]:
        _, started, title = table[pid]
        kids = sorted(p for p, (parent, _, _) in table.items() if parent == pid)
        found: dict[str, Any] = {
            "pid": pid,
            "title": title,
            "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(booted + started)),
        }
        if kids:
            found["children"] = [node(k) for k in kids]
        return found

    masters = [pid for pid, (_, _, title) in table.items() if title.startswith(MASTER_TITLE)]
    return [node(pid) for pid in sorted(masters)]


def queue_state(database: Database, destinations_limit: int = 50) -> dict[str, Any]:
    with database.transaction() as cur:
        queue = cur.one("status_queue")
        dead = cur.one("status_dead_letters", {"hours": DEAD_LETTER_HOURS})["dead"]
        unhealthy = cur.all("status_unhealthy_destinations", {"limit": destinations_limit})
    return {
        "queue": {k: queue[k] for k in ("due", "scheduled", "in_flight", "held")}
        | {"lease_expired": queue["lease_expired"]},
        "oldest_due_seconds": round(queue["oldest_due_seconds"], 3),
        "dead_letters_24h": dead,
        "unhealthy_destinations": [
            {
                "id": str(d["id"]),
                "account_id": str(d["account_id"]),
                "name": d["name"],
                "state": d["state"],
                "waiting": d["waiting"],
                "disabled_reason": d.get("disabled_reason"),
                "consecutive_failures": d.get("consecutive_failures"),
            }
            for d in unhealthy
        ],
    }


def render(report: dict[str, Any]) -> str:
    """The human form of `gethookd status`."""
    lines = []
    procs = report["processes"]
    if not procs:
        lines.append("processes: no running gateway found (no `gethookd: master` process)")
    for master in procs:
        lines.append("processes:")
        _tree(master, lines, "  ")
    q = report["queue"]
    lines.append(
        f"queue: {q['due']} due, {q['scheduled']} scheduled, {q['in_flight']} in flight "
        f"({q['lease_expired']} with an expired lease), {q['held']} held"
    )
    lines.append(f"oldest due delivery: {report['oldest_due_seconds']:.1f}s ago")
    lines.append(f"dead-lettered in the last 24 h: {report['dead_letters_24h']}")
    unhealthy = report["unhealthy_destinations"]
    lines.append(f"destinations not healthy: {len(unhealthy)}")
    for d in unhealthy:
        why = f" ({d['disabled_reason']})" if d.get("disabled_reason") else ""
        lines.append(
            f"  {d['name']} ({d['id']}, account {d['account_id']}): {d['state']}{why}, "
            f"{d['waiting']} waiting"
        )
    lines.append(
        f"stuck: {'yes' if report['stuck'] else 'no'} "
        f"(due work older than {report['stuck_after_seconds']:g}s)"
    )
    return "\n".join(lines)


def _tree(proc: dict[str, Any], lines: list[str], indent: str) -> None:
    lines.append(f"{indent}{proc['pid']:>7}  {proc['title']}  (since {proc['started_at']})")
    for child in proc.get("children", []):
        _tree(child, lines, indent + "  ")
