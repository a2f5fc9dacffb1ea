"""The installed package must carry every module and data file a clean `pip install .` needs."""

import configparser
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_every_subpackage_is_listed_in_setup_cfg():
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    listed = set(cfg["options"]["packages"].split())
    on_disk = {
        ".".join(init.parent.relative_to(ROOT).parts)
        for init in (ROOT / "gethookd").rglob("__init__.py")
    }
    assert on_disk - listed == set(), "add these to [options] packages in setup.cfg"
    assert "gethookd.migrations" in listed


def test_data_files_are_declared():
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    data = cfg["options.package_data"]
    assert "*.sql" in data["gethookd.sql"]
    assert "*.sql" in data["gethookd.migrations"]
    assert "*.html" in data["gethookd.api"]
