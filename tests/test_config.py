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
    assert cfg.API_WORKERS is None  # auto: sized by the role at start
    assert cfg.masked()["API_WORKERS"] == "auto"
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


def test_api_workers_auto_is_sized_by_the_role():
    """auto: one API process per usable CPU for an API-only instance, one per two when the
    instance also runs delivery processes; a number is taken as given."""
    cpus = config_mod.usable_cpus()
    auto = load(None, {"API_WORKERS": "auto"})
    assert config_mod.api_workers(auto, "api") == cpus
    assert config_mod.api_workers(auto, "all") == max(1, cpus // 2)
    three = load(None, {"API_WORKERS": "3"})
    assert three.API_WORKERS == 3
    assert config_mod.api_workers(three, "all") == config_mod.api_workers(three, "api") == 3
    assert three.masked()["API_WORKERS"] == "3"
    with pytest.raises(ConfigError, match="API_WORKERS"):
        load(None, {"API_WORKERS": "0"})


def test_usable_cpus_is_capped_by_a_containers_quota(tmp_path):
    """A container sees the host's CPUs; its cgroup's quota says how many it may use."""
    import os

    affinity = len(os.sched_getaffinity(0))
    v2 = tmp_path / "v2"
    v2.mkdir()
    (v2 / "cpu.max").write_text("150000 100000\n")  # 1.5 CPUs: rounds up to 2
    assert config_mod.usable_cpus(str(v2)) == min(affinity, 2)
    (v2 / "cpu.max").write_text("50000 100000\n")  # half a CPU: still one process
    assert config_mod.usable_cpus(str(v2)) == 1
    (v2 / "cpu.max").write_text("max 100000\n")  # no quota
    assert config_mod.usable_cpus(str(v2)) == affinity
    v1 = tmp_path / "v1"
    (v1 / "cpu").mkdir(parents=True)
    (v1 / "cpu" / "cpu.cfs_quota_us").write_text("100000\n")
    (v1 / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    assert config_mod.usable_cpus(str(v1)) == 1
    (v1 / "cpu" / "cpu.cfs_quota_us").write_text("-1\n")  # v1 without a quota
    assert config_mod.usable_cpus(str(v1)) == affinity
    assert config_mod.usable_cpus(str(tmp_path / "none")) == affinity
