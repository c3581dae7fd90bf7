"""The options of the libraries that share the daemon's configuration files, as the
package ships them (settings/foreign_options.yaml), are those the installed
oslo.messaging and oslo.log declare. The package ships the list so that reading a
configuration never imports oslo.messaging (only the bus does).

To write the list again after an upgrade of those libraries::

    .venv/bin/python -m tests.unit.settings.test_foreign_options
"""

from __future__ import annotations

import warnings
from importlib import metadata
from pathlib import Path

import yaml
from oslo_config import cfg

from nova_autopilot.settings import loading

SHIPPED = (
    Path(__file__).resolve().parents[3]
    / "operator"
    / "nova_autopilot"
    / "settings"
    / "foreign_options.yaml"
)


def declared() -> dict[str, list[str]]:
    """Every group and option name (deprecated ones too, which oslo.config still reads)
    of the installed libraries of ``loading.FOREIGN_NAMESPACES``."""
    known: dict[str, set[str]] = {}

    def add(group: str, opts: list[cfg.Opt]) -> None:
        for opt in opts:
            known.setdefault(group, set()).add(opt.dest)
            for old in opt.deprecated_opts:
                name = (old.name or opt.dest).replace("-", "_")
                known.setdefault(old.group or group, set()).add(name)

    for entry in metadata.entry_points(group="oslo.config.opts"):
        if entry.name not in loading.FOREIGN_NAMESPACES:
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # importing oslo.messaging warns about eventlet
            listed = entry.load()()
        for group, opts in listed:
            add(str(getattr(group, "name", group) or "DEFAULT"), list(opts))
    return {group: sorted(names) for group, names in sorted(known.items())}


def test_the_shipped_list_is_what_the_installed_libraries_declare() -> None:
    shipped = yaml.safe_load(SHIPPED.read_text(encoding="utf-8"))
    assert shipped == declared(), f"stale: write it again ({__doc__.split('::')[1].strip()})"


def test_reading_a_configuration_never_imports_oslo_messaging(tmp_path: Path) -> None:
    import subprocess
    import sys

    conf = tmp_path / "nova-autopilot.conf"
    conf.write_text("[DEFAULT]\ntransport_url = rabbit://h//\nstate_dirr = /x\n")
    code = (
        "import sys\n"
        "from nova_autopilot.settings.loading import check\n"
        f"conf, problems = check(config_files=[{str(conf)!r}])\n"
        "print(len(problems), 'oslo_messaging' in sys.modules)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert done.stdout.split() == ["1", "False"], done.stdout + done.stderr


if __name__ == "__main__":
    header = "# Written by tests/unit/settings/test_foreign_options.py: do not edit by hand.\n"
    SHIPPED.write_text(header + yaml.safe_dump(declared(), sort_keys=True), encoding="utf-8")
