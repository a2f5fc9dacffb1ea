"""Apply numbered .sql migrations once each, under one advisory lock."""

from __future__ import annotations

import logging
import re
from importlib import resources
from pathlib import Path

from gethookd import db

log = logging.getLogger("gethookd.migrate")

# Any constant works; it only has to be the same in every gethookd process.
_LOCK_ID = 0x6765_7468_6F6F_6B64 & 0x7FFF_FFFF_FFFF_FFFF
_FILE = re.compile(r"^(\d+)_[\w-]+\.sql$")


def migration_files(directory: str | None) -> list[tuple[str, str]]:
    """(name, sql) in numeric order, from MIGRATIONS_DIR or the bundled set."""
    if directory:
        entries = [(p.name, p) for p in Path(directory).iterdir()]
    else:
        entries = [(e.name, e) for e in _bundled().iterdir()]
    found = sorted(
        ((int(m.group(1)), name, entry) for name, entry in entries if (m := _FILE.match(name))),
        key=lambda item: item[:2],
    )
    return [(name, entry.read_text()) for _, name, entry in found]


def _bundled():
    """Installed: the gethookd.migrations package data; in a source tree: ../migrations."""
    try:
        return resources.files("gethookd.migrations")
    except ModuleNotFoundError:
        return Path(__file__).resolve().parent.parent / "migrations"


def apply(dsn: str, directory: str | None = None) -> list[str]:
    """Returns the names applied now; concurrent callers wait, then find nothing left."""
    migrations = migration_files(directory)
    conn = db.connect(dsn, autocommit=True)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT pg_advisory_lock(%s)", (_LOCK_ID,))
            try:
                cur.execute(db.QUERIES["create_migrations_table"])
                cur.execute(db.QUERIES["applied_migrations"])
                done = {row[0] for row in cur.fetchall()}
                applied = []
                for name, sql in migrations:
                    if name in done:
                        continue
                    log.info("applying migration %s", name)
                    conn.autocommit = False
                    with conn:
                        with conn.cursor() as tx:
                            tx.execute(sql)
                            tx.execute(db.QUERIES["record_migration"], (name,))
                    conn.autocommit = True
                    applied.append(name)
                return applied
            finally:
                cur.execute("SELECT pg_advisory_unlock(%s)", (_LOCK_ID,))
    finally:
        conn.close()
