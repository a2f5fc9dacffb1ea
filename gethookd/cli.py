"""The `gethookd` command line. Nothing else imports this module."""

from __future__ import annotations

import contextlib
import sys

import click

from gethookd import __version__, logs
from gethookd import config as config_mod

EXIT_CODES = """\b
Exit codes:
  0  stopped cleanly (or the command succeeded)
  1  unexpected error
  2  invalid configuration or usage
  3  the database could not be reached or prepared, or a process could not boot
  4  (status) the queue is stuck: due work older than --stuck-after
"""

config_option = click.option(
    "--config",
    "config_file",
    type=click.Path(dir_okay=False),
    envvar="GETHOOKD_CONFIG",
    help="KEY=VALUE settings file (the environment overrides it). Env: GETHOOKD_CONFIG.",
)


def _load(config_file: str | None) -> config_mod.Config:
    try:
        config = config_mod.load(config_file)
    except config_mod.ConfigError as exc:
        click.echo(f"gethookd: configuration error: {exc}", err=True)
        sys.exit(2)
    logs.setup(config.LOG_LEVEL, config.LOG_FORMAT)
    return config


@click.group(epilog=EXIT_CODES, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="gethookd")
def main() -> None:
    """gethookd: a self-hosted webhook reliability gateway (GetHook API compatible).

    Settings come from the environment and an optional config file; see
    `gethookd check-config` and conf/gethookd.conf.example.
    """


@main.command(epilog=EXIT_CODES)
@click.option(
    "--role",
    type=click.Choice(["all", "api", "worker"]),
    default="all",
    show_default=True,
    help="all: API and delivery in one instance; api or worker: one half, to scale apart.",
)
@config_option
def run(role: str, config_file: str | None) -> None:
    """Run the gateway in the foreground under a supervising master process.

    \b
    Signals to the master:
      SIGTERM         stop accepting work, let in-flight requests and deliveries
                      finish (up to DRAIN_TIMEOUT), exit 0
      SIGINT/SIGQUIT  stop fast; unfinished deliveries are retried after their lease
      SIGHUP          re-read the configuration and replace the processes gracefully
      SIGTTIN/SIGTTOU one more / one fewer delivery process (the removed one drains)
    """
    config = _load(config_file)
    from gethookd.process import daemon

    sys.exit(daemon.run(config, role))


@main.command(epilog=EXIT_CODES)
@config_option
def migrate(config_file: str | None) -> None:
    """Apply pending database migrations and exit (the pre-deploy step)."""
    config = _load(config_file)
    from gethookd.process import daemon

    embedded = daemon.Embedded()
    try:
        config = embedded.prepare(config)
        code = daemon.migrate_now(config)
    finally:
        embedded.stop()
    if code == 0:
        click.echo("migrations are up to date")
    sys.exit(code)


@main.command()
def keygen() -> None:
    """Print a new random ENCRYPTION_KEY (64 hex characters, AES-256)."""
    from gethookd.crypto import new_encryption_key

    click.echo(new_encryption_key())


@main.command("check-config", epilog=EXIT_CODES)
@config_option
def check_config(config_file: str | None) -> None:
    """Validate the configuration and print every setting (secrets masked)."""
    config = _load(config_file)
    width = max(len(name) for name in config.values)
    for name, value in config.masked().items():
        click.echo(f"{name:<{width}}  {value}  ({config.source[name]})")
    if config.embedded:
        click.echo(
            "\nDATABASE_URL is unset: gethookd runs an embedded PostgreSQL in "
            f"{config.GETHOOKD_DATA_DIR} (a development setup)."
        )
    if config.ENCRYPTION_KEY_PREVIOUS:
        _report_key_rotation(config)
    click.echo("configuration OK")


def _report_key_rotation(config: config_mod.Config) -> None:
    """During a key rotation: how many sealed values still need the previous key."""
    import psycopg2

    from gethookd import keyrotation
    from gethookd.crypto import SecretBox
    from gethookd.db import Database
    from gethookd.process import daemon

    embedded = daemon.Embedded()
    try:
        config = embedded.prepare(config)
        database = Database(config.DATABASE_URL, maxconn=1)
        try:
            stale = keyrotation.count_stale(database, SecretBox(config.ENCRYPTION_KEY))
        finally:
            database.close()
    except psycopg2.Error as exc:
        click.echo(f"gethookd: cannot count values under the old key: {exc}".strip(), err=True)
        return
    finally:
        embedded.stop()
    total = sum(stale.values())
    detail = ", ".join(f"{table} {count}" for table, count in stale.items())
    click.echo(f"\nsecrets still sealed with an old encryption key: {total} ({detail})")
    if total:
        click.echo("run `gethookd rotate-key` to re-encrypt them under ENCRYPTION_KEY")
    else:
        click.echo("every secret uses ENCRYPTION_KEY: ENCRYPTION_KEY_PREVIOUS can be unset")


@contextlib.contextmanager
def _admin_database(config: config_mod.Config, *, migrate: bool = False):
    """(config, database) for an admin command. Beside a running gateway on the embedded
    PostgreSQL it adopts that server (else it starts and stops one); a database error
    exits 3 with the reason."""
    import psycopg2

    from gethookd.db import Database
    from gethookd.process import daemon

    embedded = daemon.Embedded()
    try:
        config = embedded.prepare(config)
        if migrate and daemon.migrate_now(config) != 0:
            sys.exit(3)
        database = Database(config.DATABASE_URL, maxconn=1)
        try:
            yield config, database
        finally:
            database.close()
    except psycopg2.Error as exc:
        click.echo(f"gethookd: database error: {str(exc).strip()}", err=True)
        sys.exit(3)
    finally:
        embedded.stop()


@main.command(epilog=EXIT_CODES)
@click.option("--json", "as_json", is_flag=True, help="Print the report as one JSON object.")
@click.option(
    "--stuck-after",
    default="5m",
    show_default=True,
    help="Exit 4 when the oldest due delivery has waited longer than this (5, 30s, 5m, 1h).",
)
@config_option
def status(as_json: bool, stuck_after: str, config_file: str | None) -> None:
    """Show the running processes and the delivery queue; exit 4 if the queue is stuck.

    Reads the database the gateway uses (the embedded one too, beside a running
    gateway) and never changes it.
    """
    try:
        threshold = config_mod.parse_duration(stuck_after)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--stuck-after") from None
    config = _load(config_file)

    from gethookd import status as status_mod

    with _admin_database(config) as (config, database):
        report = status_mod.queue_state(database)
    report["processes"] = status_mod.processes()
    report["stuck_after_seconds"] = threshold
    report["stuck"] = report["queue"]["due"] > 0 and report["oldest_due_seconds"] > threshold
    if as_json:
        import json

        click.echo(json.dumps(report, indent=2))
    else:
        click.echo(status_mod.render(report))
    sys.exit(4 if report["stuck"] else 0)


@main.command("rotate-key", epilog=EXIT_CODES)
@click.option(
    "--batch-size",
    default=100,
    show_default=True,
    type=click.IntRange(1, 10000),
    help="Rows re-encrypted per transaction.",
)
@click.option(
    "--pause",
    default="0s",
    show_default=True,
    help="Pause between two batches (e.g. 50ms), to go easier on a busy database.",
)
@config_option
def rotate_key(batch_size: int, pause: str, config_file: str | None) -> None:
    """Re-encrypt every stored secret under ENCRYPTION_KEY while the gateway runs.

    Give the old key as ENCRYPTION_KEY_PREVIOUS (to every instance, then reload them),
    then run this; it is safe to stop and run again. Exit 1 if some value could not be
    decrypted with either key (table, column and row id are printed; never a secret).
    """
    try:
        pause_seconds = 0.0 if pause.strip() in ("0", "0s") else config_mod.parse_duration(pause)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--pause") from None
    config = _load(config_file)

    from gethookd import keyrotation
    from gethookd.crypto import SecretBox

    if not config.ENCRYPTION_KEY_PREVIOUS:
        click.echo(
            "gethookd: ENCRYPTION_KEY_PREVIOUS is unset: only values the current key "
            "opens are brought to its key id",
            err=True,
        )
    with _admin_database(config) as (config, database):
        box = SecretBox(config.ENCRYPTION_KEY, config.ENCRYPTION_KEY_PREVIOUS)
        total = sum(keyrotation.count_stale(database, box).values())
        with click.progressbar(length=total, label="re-encrypting secrets") as bar:
            result = keyrotation.rotate(database, box, batch_size, pause_seconds, bar.update)
    click.echo(f"re-encrypted {result.rewritten} value(s) under key {box.key_id}")
    if result.unreadable:
        for table, column, row_id in sorted(result.unreadable):
            click.echo(f"cannot decrypt {table}.{column} of {row_id}", err=True)
        sys.exit(1)
    if result.remaining:
        click.echo(f"{result.remaining} value(s) stayed locked by live requests; run it again")
        sys.exit(1)
    click.echo("every secret uses ENCRYPTION_KEY")


@main.command(epilog=EXIT_CODES)
@click.option("--dry-run", is_flag=True, help="Only count the events that would be deleted.")
@click.option(
    "--batch-size",
    default=None,
    type=click.IntRange(1, 10000),
    help="Events deleted per transaction [default: RETENTION_BATCH_SIZE].",
)
@config_option
def purge(dry_run: bool, batch_size: int | None, config_file: str | None) -> None:
    """Delete finished events older than their account's retention, now.

    The delivery processes do this every few minutes on their own; exactly one process
    among all instances purges at a time (exit 1 if another one is purging now). Events
    with a pending, held or in-flight delivery are kept.
    """
    config = _load(config_file)

    from gethookd import retention

    with _admin_database(config) as (config, database):
        if dry_run:
            done = retention.run_exclusive(config, dry_run=True)
        else:
            total = sum(retention.count(database, config.RETENTION_DAYS).values())
            with click.progressbar(length=total, label="deleting expired events") as bar:
                batch = batch_size or config.RETENTION_BATCH_SIZE
                done = retention.run_exclusive(config, batch=batch, progress=bar.update)
    if done is None:
        click.echo("gethookd: another process is purging now; try again later", err=True)
        sys.exit(1)
    click.echo(f"{done} expired event(s) " + ("would be deleted" if dry_run else "deleted"))


@main.command(epilog=EXIT_CODES)
@click.option("--account", "account_id", help="Account whose events to replay (its id).")
@click.option("--source", "source_id", help="Only events of this source (id).")
@click.option("--destination", "destination_id", help="Only events delivered to this (id).")
@click.option("--status", help="Only events in this status, e.g. dead_letter.")
@click.option("--direction", type=click.Choice(["inbound", "outbound"]))
@click.option("--event-type", help="Only events of this type (exact).")
@click.option("--since", help="Created at or after (RFC 3339, e.g. 2026-11-28T00:00:00Z).")
@click.option("--until", help="Created before (RFC 3339).")
@click.option("--to-destination", "to_destination_id", help="Replay to this destination only (id).")
@click.option("--dry-run", is_flag=True, help="Only count the events that would be replayed.")
@click.option(
    "--rate",
    type=click.FloatRange(min=0.1),
    help="At most this many events per second (spare live traffic). Default: no limit.",
)
@click.option(
    "--batch-size",
    default=200,
    show_default=True,
    type=click.IntRange(1, 10000),
    help="Events replayed per transaction.",
)
@click.option("--resume", "resume_id", help="Resume this replay job (its id) where it stopped.")
@config_option
def replay(
    account_id: str | None,
    source_id: str | None,
    destination_id: str | None,
    status: str | None,
    direction: str | None,
    event_type: str | None,
    since: str | None,
    until: str | None,
    to_destination_id: str | None,
    dry_run: bool,
    rate: float | None,
    batch_size: int,
    resume_id: str | None,
    config_file: str | None,
) -> None:
    """Replay every event of an account that the filters match, as single replay does.

    Runs as a job: stopped (Ctrl-C, a crash), the same command (or --resume JOB_ID) goes
    on where it stopped and replays nothing twice. Exit 1 if another process runs the job.
    """
    import uuid

    from gethookd.errors import DomainError, Invalid
    from gethookd.services.event_filter import EventFilter
    from gethookd.services.replay import Replays

    given = {
        "source_id": source_id,
        "destination_id": destination_id,
        "status": status,
        "direction": direction,
        "event_type": event_type,
        "since": since,
        "until": until,
    }

    def an_id(value: str | None, option: str) -> uuid.UUID | None:
        try:
            return uuid.UUID(value) if value is not None else None
        except ValueError:
            raise click.BadParameter("not an id (a UUID)", param_hint=option) from None

    job_id = an_id(resume_id, "--resume")
    if job_id is None and account_id is None:
        raise click.UsageError("give --account (or --resume JOB_ID)")
    try:
        event_filter = EventFilter.parse(given.get)
    except Invalid as exc:
        raise click.UsageError(exc.message) from None
    account = an_id(account_id, "--account")
    target = an_id(to_destination_id, "--to-destination")
    config = _load(config_file)
    with _admin_database(config) as (config, database):
        replays = Replays(config, database)
        try:
            if job_id is not None:
                job = replays.get(None, job_id)
            elif dry_run:
                n = replays.matching(account, event_filter, target)
                click.echo(f"{n} event(s) would be replayed")
                return
            else:
                job = replays.open_like(account, event_filter, target)
                if job is not None:
                    click.echo(f"resuming replay job {job['id']} (same account and filters)")
                else:
                    job = replays.create(account, event_filter, target, "cli", _rate(rate))
                    click.echo(f"replay job {job['id']}: {job['total']} event(s)")
        except DomainError as exc:
            click.echo(f"gethookd: {exc.message}", err=True)
            sys.exit(2)
        if job["state"] not in ("pending", "running"):
            click.echo(f"replay job {job['id']} is {job['state']}: nothing to do")
            return
        rate = rate or job["rate"]  # a resumed job keeps the rate it was started with
        done = job["replayed"] + job["skipped"]
        with click.progressbar(length=max(job["total"], done), label="replaying") as bar:
            bar.update(done)
            try:
                result = replays.run(job["id"], rate, batch_size, bar.update)
            except KeyboardInterrupt:
                click.echo(f"\nstopped; run it again or --resume {job['id']} to go on", err=True)
                sys.exit(130)
    if result is None:
        click.echo(f"gethookd: another process runs replay job {job['id']} now", err=True)
        sys.exit(1)
    click.echo(
        f"replay job {result['id']} {result['state']}: {result['replayed']} event(s) "
        f"replayed, {result['skipped']} skipped"
    )
    if result["state"] != "finished":
        sys.exit(1)


def _rate(rate: float | None) -> int | None:
    """The rate as the job records it (whole events per second)."""
    return None if rate is None else max(1, round(rate))


@main.group()
def accounts() -> None:
    """Manage accounts from the command line (bootstrap without the API)."""


@accounts.command("create", epilog=EXIT_CODES)
@click.option("--name", required=True, help="Account name.")
@click.option("--email", default=None, help="Contact email (unique; no password is set).")
@click.option("--json", "as_json", is_flag=True, help="Print the answer as JSON.")
@config_option
def accounts_create(name: str, email: str | None, as_json: bool, config_file: str | None) -> None:
    """Create an account and its first API key; the key is printed once."""
    config = _load(config_file)

    from gethookd.errors import DomainError
    from gethookd.service import Gateway

    with _admin_database(config, migrate=True) as (config, database):
        try:
            boot = Gateway(config, database).register(name, email, None)
        except DomainError as exc:
            click.echo(f"gethookd: {exc.message}", err=True)
            sys.exit(2)
    if as_json:
        from gethookd.api.app import to_json

        click.echo(to_json(boot))
        return
    account, key = boot["account"], boot["api_key"]
    click.echo(f"account {account['id']} ({account['name']}) created")
    click.echo(f"API key (shown once, keep it safe): {key['key']}")


if __name__ == "__main__":
    main()
