"""Behaviour of nova_autopilot.settings.groups: building and documenting the
options, and the secrets among them."""

from __future__ import annotations

import difflib
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
from oslo_config import cfg

from nova_autopilot import settings
from tests.unit.settings.support import write

REPO = Path(__file__).resolve().parents[3]
SAMPLE = REPO / "config" / "nova-autopilot.conf.sample"
GENERATOR_CONF = REPO / "config" / "oslo-config-generator.conf"


def test_secrets_are_marked_secret_and_masked_when_the_configuration_is_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = write(
        tmp_path,
        "secret.conf",
        "[requests]\nbroker_url = amqp://autopilot:Br0kerPw@rabbit//\n"
        "[journal]\nconnection = mysql+pymysql://autopilot:DbPw1@db/autopilot\n",
    )
    conf = settings.load(config_files=[path])

    secret = {
        (group, opt.dest) for group, opts in settings.list_opts() for opt in opts if opt.secret
    }
    with caplog.at_level(logging.DEBUG, logger="test.settings"):
        conf.log_opt_values(logging.getLogger("test.settings"), logging.DEBUG)

    assert secret == {("requests", "broker_url"), ("journal", "connection")}
    assert conf.requests.broker_url == "amqp://autopilot:Br0kerPw@rabbit//"
    assert "requests.broker_url" in caplog.text
    assert "Br0kerPw" not in caplog.text
    assert "DbPw1" not in caplog.text


def test_list_opts_covers_every_registered_group_and_option_with_help() -> None:
    conf = settings.build_conf()
    builtin = set(cfg.ConfigOpts())  # oslo.config's own, such as config_source
    registered_groups = {name for name in conf if isinstance(conf[name], cfg.ConfigOpts.GroupAttr)}
    registered = {("DEFAULT", name) for name in set(conf) - builtin - registered_groups}
    for group in registered_groups:
        registered |= {(group, name) for name in conf[group]}

    listed = {(group, opt.dest) for group, opts in settings.list_opts() for opt in opts}

    assert {group for group, _ in settings.list_opts()} == registered_groups | {"DEFAULT"}
    assert listed == registered
    assert all(opt.help for _, opts in settings.list_opts() for opt in opts)


def test_build_conf_returns_independent_objects() -> None:
    first, second = settings.build_conf(), settings.build_conf()
    first([], default_config_files=[], default_config_dirs=[])
    second([], default_config_files=[], default_config_dirs=[])

    first.set_override("dry_run", True, group="guards")

    assert first.guards.dry_run is True
    assert second.guards.dry_run is False


def test_the_committed_sample_matches_the_options(tmp_path: Path) -> None:
    """The sample is regenerated exactly as `oslo-config-generator` would, through the
    `oslo.config.opts` entry point, whether or not the project is installed: a
    distribution record declaring the entry point is put first on the path."""
    record = tmp_path / "path" / "nova_autopilot-0.0.0.dist-info"
    record.mkdir(parents=True)
    (record / "METADATA").write_text("Metadata-Version: 2.1\nName: nova-autopilot\nVersion: 0\n")
    (record / "entry_points.txt").write_text(
        "[oslo.config.opts]\nnova-autopilot = nova_autopilot.settings:list_opts\n"
    )
    output = tmp_path / "nova-autopilot.conf.sample"
    python_path = [str(record.parent), str(REPO / "operator"), os.environ.get("PYTHONPATH", "")]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(p for p in python_path if p),
        "XDG_CACHE_HOME": str(tmp_path / "cache"),
        "PYTHONWARNINGS": "ignore",
    }

    subprocess.run(
        [
            sys.executable,
            "-c",
            "from oslo_config.generator import main; main()",
            "--config-file",
            str(GENERATOR_CONF),
            "--output-file",
            str(output),
        ],
        cwd=REPO,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )

    expected = output.read_text(encoding="utf-8")
    committed = SAMPLE.read_text(encoding="utf-8") if SAMPLE.exists() else ""
    diff = "".join(
        difflib.unified_diff(
            committed.splitlines(keepends=True),
            expected.splitlines(keepends=True),
            "config/nova-autopilot.conf.sample (committed)",
            "regenerated",
        )
    )
    assert committed == expected, (
        "config/nova-autopilot.conf.sample is out of date; regenerate it with\n"
        "    oslo-config-generator --config-file config/oslo-config-generator.conf\n"
        f"(or `make sample`).\n{diff}"
    )
