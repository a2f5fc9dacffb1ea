import subprocess

import pytest

from gethookd import config as config_mod
from gethookd.config import ConfigError, load
from helpers import gethookd_command

KEY = "ab" * 32


def test_defaults_match_the_deployment_guide():
    cfg = load(None, {})
    assert cfg.PORT == 8080
    assert cfg.CORS_ORIGIN == "*"
    assert cfg.WORKER_POLL_INTERVAL == 5.0
    assert cfg.WORKER_MAX_CONCURRENCY == 10
    assert cfg.DELIVERY_TIMEOUT == 30.0
    assert cfg.API_WORKERS == 2
    assert cfg.WORKER_PROCESSES == 1
    assert cfg.BASE_URL == "http://localhost:8080"
    assert cfg.embedded
    assert cfg.EMBEDDED_SHARED_BUFFERS is None  # auto
    assert cfg.masked()["EMBEDDED_SHARED_BUFFERS"] == "auto"


def test_embedded_shared_buffers_sizes():
    assert load(None, {"EMBEDDED_SHARED_BUFFERS": "2GB"}).EMBEDDED_SHARED_BUFFERS == 2097152
    assert load(None, {"EMBEDDED_SHARED_BUFFERS": " 256mb "}).EMBEDDED_SHARED_BUFFERS == 262144
    assert load(None, {"EMBEDDED_SHARED_BUFFERS": "2048kB"}).EMBEDDED_SHARED_BUFFERS == 2048
    assert load(None, {"EMBEDDED_SHARED_BUFFERS": "1GB"}).masked()["EMBEDDED_SHARED_BUFFERS"] == (
        "1048576kB"
    )


def test_environment_beats_file_beats_default(tmp_path):
    conf = tmp_path / "gethookd.conf"
    conf.write_text("# comment\nPORT=9000\nCORS_ORIGIN='https://app.example'\nAPI_WORKERS=3\n")
    cfg = load(str(conf), {"PORT": "9100"})
    assert cfg.PORT == 9100
    assert cfg.source["PORT"] == "environment"
    assert cfg.CORS_ORIGIN == "https://app.example"
    assert cfg.API_WORKERS == 3
    assert cfg.source["API_WORKERS"] == "file"
    assert cfg.source["WORKER_PROCESSES"] == "default"


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"PORT": "eighty"}, "PORT"),
        ({"PORT": "70000"}, "PORT"),
        ({"WORKER_POLL_INTERVAL": "soon"}, "WORKER_POLL_INTERVAL"),
        ({"WORKER_MAX_CONCURRENCY": "0"}, "WORKER_MAX_CONCURRENCY"),
        ({"DELIVERY_TIMEOUT": "-1"}, "DELIVERY_TIMEOUT"),
        ({"BASE_URL": "ftp://x"}, "BASE_URL"),
        ({"DATABASE_URL": "mysql://x/y", "ENCRYPTION_KEY": KEY}, "DATABASE_URL"),
        ({"DATABASE_URL": "postgresql://x/y"}, "ENCRYPTION_KEY"),
        ({"DATABASE_URL": "postgresql://x/y", "ENCRYPTION_KEY": "abc"}, "ENCRYPTION_KEY"),
        ({"DATABASE_URL": "postgresql://x/y", "ENCRYPTION_KEY": "zz" * 32}, "ENCRYPTION_KEY"),
        ({"LOG_FORMAT": "xml"}, "LOG_FORMAT"),
        ({"EMBEDDED_SHARED_BUFFERS": "lots"}, "EMBEDDED_SHARED_BUFFERS"),
        ({"EMBEDDED_SHARED_BUFFERS": "512kB"}, "EMBEDDED_SHARED_BUFFERS"),
    ],
)
def test_bad_values_name_the_setting(env, named):
    with pytest.raises(ConfigError) as err:
        load(None, env)
    assert named in str(err.value)


def test_secret_values_are_never_echoed():
    with pytest.raises(ConfigError) as err:
        load(None, {"DATABASE_URL": "postgresql://x/y", "ENCRYPTION_KEY": "secret-but-short"})
    assert "secret-but-short" not in str(err.value)


def test_config_file_errors(tmp_path):
    bad = tmp_path / "bad.conf"
    bad.write_text("NOT_A_SETTING=1\n")
    with pytest.raises(ConfigError, match="unknown setting NOT_A_SETTING"):
        load(str(bad), {})
    with pytest.raises(ConfigError, match="cannot read config file"):
        load(str(tmp_path / "missing.conf"), {})


def test_masked_hides_secrets():
    cfg = load(None, {"DATABASE_URL": "postgresql://u:hunter2@db/x", "ENCRYPTION_KEY": KEY})
    shown = cfg.masked()
    assert "hunter2" not in shown["DATABASE_URL"]
    assert shown["ENCRYPTION_KEY"] == "****"


def test_example_file_lists_every_setting():
    from pathlib import Path

    example = Path(__file__).parent.parent / "conf" / "gethookd.conf.example"
    assert example.read_text() == config_mod.example_file() + "\n"


def _cli(*args, env=None):
    import os

    clean = {k: v for k, v in os.environ.items() if k not in {s.name for s in config_mod.SETTINGS}}
    return subprocess.run(
        [*gethookd_command(), *args],
        env={**clean, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_run_refuses_database_url_without_key():
    result = _cli("run", env={"DATABASE_URL": "postgresql://localhost/gethookd"})
    assert result.returncode == 2
    assert "ENCRYPTION_KEY" in result.stderr


def test_check_config_masks_and_keygen_makes_keys():
    key = _cli("keygen").stdout.strip()
    assert len(key) == 64 and int(key, 16) >= 0
    result = _cli(
        "check-config", env={"DATABASE_URL": "postgresql://u:pw@h/d", "ENCRYPTION_KEY": key}
    )
    assert result.returncode == 0, result.stderr
    assert key not in result.stdout and ":pw@" not in result.stdout
    assert "configuration OK" in result.stdout
    bad = _cli("check-config", env={"PORT": "x"})
    assert bad.returncode == 2 and "PORT" in bad.stderr


def test_every_command_has_help():
    for command in ([], ["run"], ["migrate"], ["keygen"], ["check-config"]):
        result = _cli(*command, "--help")
        assert result.returncode == 0
        assert "Usage:" in result.stdout
    assert _cli("--version").stdout.strip().startswith("gethookd")
