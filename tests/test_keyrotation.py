"""Encryption-key rotation: values name their key, both keys open during the transition,
`gethookd rotate-key` survives a SIGKILL half way, and deliveries keep verifiable
signatures through a daemon that finally holds the new key only."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import uuid
from urllib.parse import urlsplit

import psycopg2
import psycopg2.extras
import pytest
import requests
from cryptography.exceptions import InvalidTag
from standardwebhooks import Webhook

from gethookd import config as config_mod
from gethookd import crypto
from helpers import Api, gethookd_command, wait_for

OLD, NEW = "11" * 32, "22" * 32


def test_a_value_names_its_key_and_both_keys_open_during_a_rotation():
    old, both, new_only = (
        crypto.SecretBox(OLD),
        crypto.SecretBox(NEW, OLD),
        crypto.SecretBox(NEW),
    )
    sealed = old.encrypt("s3cret", "t.c:1")
    assert sealed.startswith(f"v1:{crypto.key_id(OLD)}:") and OLD[:8] not in sealed
    assert crypto.key_id(OLD) != crypto.key_id(NEW)
    assert both.decrypt(sealed, "t.c:1") == "s3cret"
    resealed = both.encrypt("s3cret", "t.c:1")  # new writes use the new key
    assert both.is_current(resealed) and not both.is_current(sealed)
    assert new_only.decrypt(resealed, "t.c:1") == "s3cret"
    with pytest.raises(InvalidTag, match="neither ENCRYPTION_KEY"):
        new_only.decrypt(sealed, "t.c:1")
    with pytest.raises(InvalidTag):
        both.decrypt(sealed, "t.c:2")  # still bound to its row


def test_values_sealed_before_key_ids_open_with_either_key():
    legacy = _legacy(crypto.SecretBox(OLD).encrypt("s3cret", "t.c:1"))
    assert legacy.count(":") == 1
    assert crypto.SecretBox(OLD).decrypt(legacy, "t.c:1") == "s3cret"
    assert crypto.SecretBox(NEW, OLD).decrypt(legacy, "t.c:1") == "s3cret"
    with pytest.raises(InvalidTag):
        crypto.SecretBox(NEW).decrypt(legacy, "t.c:1")


def test_previous_key_is_a_masked_secret_setting_that_must_differ():
    config = config_mod.load(None, {"ENCRYPTION_KEY": NEW, "ENCRYPTION_KEY_PREVIOUS": OLD})
    assert config.masked()["ENCRYPTION_KEY_PREVIOUS"] == "****"
    with pytest.raises(config_mod.ConfigError, match="must differ"):
        config_mod.load(None, {"ENCRYPTION_KEY": NEW, "ENCRYPTION_KEY_PREVIOUS": NEW})


def _legacy(sealed: str) -> str:
    """The format written before key ids: `v1:<base64>`."""
    version, _kid, body = sealed.split(":")
    return f"{version}:{body}"


def _seed(db_url: str, account_id: str, count: int) -> dict[tuple[str, str, str], str]:
    """`count` destinations and sources sealed with OLD (every third in the legacy format);
    returns (table, column, id) -> plaintext."""
    box = crypto.SecretBox(OLD)
    expected: dict[tuple[str, str, str], str] = {}

    def seal(table: str, column: str, row_id: str, plain: str, n: int) -> str:
        expected[(table, column, row_id)] = plain
        sealed = box.encrypt(plain, crypto.aad(f"{table}.{column.removesuffix('_enc')}", row_id))
        return _legacy(sealed) if n % 3 == 0 else sealed

    dests, sources = [], []
    for n in range(count):
        d, s = str(uuid.uuid4()), str(uuid.uuid4())
        secret = crypto.new_signing_secret()
        auth = json.dumps({"type": "bearer", "token": f"tok_{n}_{uuid.uuid4().hex}"})
        dests.append(
            (
                d,
                account_id,
                f"seeded-{n}",
                "http://127.0.0.1:9/hook",
                seal("destinations", "signing_secret_enc", d, secret, n),
                seal("destinations", "previous_signing_secret_enc", d, secret + "old", n)
                if n % 2
                else None,
                seal("destinations", "auth_config_enc", d, auth, n),
            )
        )
        verification = json.dumps({"secret": f"whsec_{n}"})
        sources.append(
            (
                s,
                account_id,
                f"seeded-{n}",
                uuid.uuid4().hex,
                seal("sources", "verification_config_enc", s, verification, n),
            )
        )
    conn = psycopg2.connect(db_url)
    with conn, conn.cursor() as cur:
        psycopg2.extras.execute_values(
            cur,
            "INSERT INTO destinations (id, account_id, name, url, signing_secret_enc, "
            "previous_signing_secret_enc, auth_config_enc) VALUES %s",
            dests,
        )
        psycopg2.extras.execute_values(
            cur,
            "INSERT INTO sources (id, account_id, name, path_token, verification_config_enc) "
            "VALUES %s",
            sources,
        )
    conn.close()
    return expected


def _sealed_values(db_url: str) -> dict[tuple[str, str, str], str]:
    conn = psycopg2.connect(db_url)
    found = {}
    with conn, conn.cursor() as cur:
        for table, columns in (
            (
                "destinations",
                ("signing_secret_enc", "previous_signing_secret_enc", "auth_config_enc"),
            ),
            ("sources", ("verification_config_enc",)),
        ):
            cur.execute(f"SELECT id, {', '.join(columns)} FROM {table}")
            for row_id, *values in cur.fetchall():
                for column, value in zip(columns, values, strict=True):
                    if value is not None:
                        found[(table, column, str(row_id))] = value
    conn.close()
    return found


def _count_new(db_url: str) -> int:
    prefix = crypto.SecretBox(NEW).current_prefix
    return sum(v.startswith(prefix) for v in _sealed_values(db_url).values())


def _cli(env: dict[str, str], *args: str, **kwargs) -> subprocess.Popen:
    clean = {k: v for k, v in os.environ.items() if k not in {s.name for s in config_mod.SETTINGS}}
    return subprocess.Popen(
        [*gethookd_command(), *args],
        env={**clean, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kwargs,
    )


def _deliver_and_verify(daemon, objs, secret: str, sink, n: int) -> None:
    body = json.dumps({"type": "rotation.check", "n": n}).encode()
    path = urlsplit(objs["source"]["ingest_url"]).path  # each daemon has its own port
    resp = requests.post(daemon.url + path, data=body, headers={"Content-Type": "application/json"})
    assert resp.status_code == 202, resp.text
    event_id = resp.json()["data"]["id"]
    got = wait_for(
        lambda: next(
            (r for r in sink.requests if r["headers"].get("Webhook-Id") == event_id), None
        ),
        what=f"webhook {n} at the sink",
    )
    assert got["body"] == body
    Webhook(secret).verify(got["body"], got["headers"])  # raises if the signature is wrong


def test_rotation_killed_half_way_then_finished_keeps_every_secret_and_signature(
    daemon_factory, db_url, sink
):
    before = daemon_factory(ENCRYPTION_KEY=OLD)
    api = Api(before.url).register()
    secret = crypto.new_signing_secret()
    source = api.data("POST", "/v1/sources", {"name": "provider"}, status=201)
    dest = api.data(
        "POST",
        "/v1/destinations",
        {"name": "sink", "url": sink.url + "/hook", "signing_secret": secret},
        status=201,
    )
    api.data(
        "POST",
        "/v1/routes",
        {"source_id": source["id"], "destination_id": dest["id"]},
        status=201,
    )
    objs = {"source": source, "destination": dest}
    _deliver_and_verify(before, objs, secret, sink, 0)
    account_id = api.data("GET", "/v1/destinations/" + dest["id"])["account_id"]
    expected = _seed(db_url, account_id, 150)
    before.kill()

    # The transition: the gateway runs with the new key and the previous one.
    env = {"DATABASE_URL": db_url, "ENCRYPTION_KEY": NEW, "ENCRYPTION_KEY_PREVIOUS": OLD}
    during = daemon_factory(**env)
    _deliver_and_verify(during, objs, secret, sink, 1)
    total = len(_sealed_values(db_url))
    assert _count_new(db_url) == 0

    rotation = _cli(env, "rotate-key", "--batch-size", "3", "--pause", "30ms")
    wait_for(lambda: _count_new(db_url) >= 60, what="some batches to commit")
    rotation.send_signal(signal.SIGKILL)
    rotation.communicate(timeout=10)
    half = _count_new(db_url)
    assert 60 <= half < total, (half, total)

    # Mid-way: both keys still open everything, deliveries continue, check-config counts.
    _deliver_and_verify(during, objs, secret, sink, 2)
    checked = _cli(env, "check-config")
    out, err = checked.communicate(timeout=60)
    assert checked.returncode == 0, err
    assert f"secrets still sealed with an old encryption key: {total - half} " in out

    finished = _cli(env, "rotate-key", "--batch-size", "50")
    out, err = finished.communicate(timeout=120)
    assert finished.returncode == 0, err
    assert "every secret uses ENCRYPTION_KEY" in out
    assert OLD not in out + err and NEW not in out + err and secret not in out + err
    checked = _cli(env, "check-config")
    out, _ = checked.communicate(timeout=60)
    assert "secrets still sealed with an old encryption key: 0 " in out

    # Every value now opens with the new key alone, to the same plaintext.
    new_only = crypto.SecretBox(NEW)
    values = _sealed_values(db_url)
    assert len(values) == total
    for (table, column, row_id), sealed in values.items():
        assert new_only.is_current(sealed)
        context = crypto.aad(f"{table}.{column.removesuffix('_enc')}", row_id)
        plain = new_only.decrypt(sealed, context)
        if (table, column, row_id) in expected:
            assert plain == expected[(table, column, row_id)]
    during.kill()

    after = daemon_factory(DATABASE_URL=db_url, ENCRYPTION_KEY=NEW)
    assert "ENCRYPTION_KEY_PREVIOUS" not in after.env or not after.env["ENCRYPTION_KEY_PREVIOUS"]
    _deliver_and_verify(after, objs, secret, sink, 3)
    shown = Api(after.url, api.key).data("GET", "/v1/destinations/" + dest["id"])
    assert shown["signing_secret"] == crypto.mask(secret)
