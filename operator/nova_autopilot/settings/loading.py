"""Loading the configuration: which files are read and in which order, and every
problem found in them raised as :class:`SettingsError`, whose message names the
file and the option concerned.

oslo.config neither refuses unknown options nor says where a bad value came
from, so the files are also parsed here, to refuse a misspelt option of our own
groups and to name the file (or the environment variable) of a bad value.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Mapping, Sequence

from oslo_config import cfg

from nova_autopilot.settings.groups import build_conf, option_groups

PROJECT = "nova-autopilot"
_SECRET_MASK = "***"


class SettingsError(ValueError):
    """The configuration cannot be used; the message names the file and option."""

    def __init__(self, message: str, *, path: str | None = None, option: str | None = None):
        super().__init__(message)
        self.path = path
        self.option = option


def load(
    *,
    config_files: Sequence[str] = (),
    config_dirs: Sequence[str] = (),
    overrides: Mapping[str, Mapping[str, object]] | None = None,
) -> cfg.ConfigOpts:
    """Build a ConfigOpts and parse the configuration files into it.

    With neither ``config_files`` nor ``config_dirs``, oslo.config's default
    locations for project ``nova-autopilot`` are read when they exist (such as
    ``/etc/nova-autopilot/nova-autopilot.conf`` and
    ``/etc/nova-autopilot/nova-autopilot.conf.d/*.conf``). Otherwise exactly the
    given files, then the ``*.conf`` files of each given directory in name order,
    are read; later files take precedence. ``OS_<GROUP>__<OPTION>`` environment
    variables override files, and ``overrides`` ({group: {option: value}}, group
    ``DEFAULT`` for [DEFAULT]) override everything. The command line is never read.

    Every option is converted once here, so a bad value fails now with a
    :class:`SettingsError` instead of later, in the middle of an operation.
    """
    if not config_files and not config_dirs:
        files = list(dict.fromkeys(cfg.find_config_files(project=PROJECT, prog=PROJECT)))
        dirs = list(dict.fromkeys(cfg.find_config_dirs(project=PROJECT, prog=PROJECT)))
    else:
        files, dirs = list(config_files), list(config_dirs)
        for directory in dirs:
            if not os.path.isdir(os.path.expanduser(directory)):
                raise SettingsError(
                    f"configuration directory not found: {directory}", path=directory
                )
    conf = build_conf()
    try:
        conf(
            args=[],
            project=PROJECT,
            prog=PROJECT,
            default_config_files=files,
            default_config_dirs=dirs,
            validate_default_values=True,
        )
    except cfg.ConfigFilesNotFoundError as exc:
        paths = ", ".join(exc.config_files)
        raise SettingsError(f"configuration file not found: {paths}", path=paths) from exc
    except cfg.ConfigFilesPermissionDeniedError as exc:
        paths = ", ".join(exc.config_files)
        raise SettingsError(f"configuration file not readable: {paths}", path=paths) from exc
    except cfg.ConfigFileParseError as exc:
        raise SettingsError(
            f"cannot parse configuration file {exc.config_file}: {exc.msg}", path=exc.config_file
        ) from exc
    except (OSError, cfg.Error) as exc:
        raise SettingsError(f"cannot read the configuration: {exc}") from exc

    parsed = _parse_files(_expand(files, dirs))
    _reject_unknown_options(parsed)
    for group_name, values in (overrides or {}).items():
        for name, value in values.items():
            group = None if group_name == "DEFAULT" else group_name
            try:
                conf.set_override(name, value, group=group)
            except (cfg.NoSuchOptError, cfg.NoSuchGroupError) as exc:
                raise SettingsError(
                    f"invalid override: {exc}", option=f"[{group_name}] {name}"
                ) from exc
            except ValueError as exc:
                opt = f"[{group_name}] {name}"
                raise SettingsError(f"invalid override for {opt}: {exc}", option=opt) from exc
    _convert_every_option(conf, parsed)
    return conf


_Sections = dict[str, dict[str, list[str]]]


def _expand(files: Sequence[str], dirs: Sequence[str]) -> list[str]:
    """The files in the order oslo.config reads them (later ones take precedence)."""
    expanded = list(files)
    for directory in dirs:
        pattern = os.path.join(os.path.expanduser(directory), "*.conf")
        expanded.extend(sorted(glob.glob(pattern)))
    return expanded


def _parse_files(paths: Sequence[str]) -> list[tuple[str, _Sections]]:
    parsed: list[tuple[str, _Sections]] = []
    for path in paths:
        sections: _Sections = {}
        cfg.ConfigParser(os.path.expanduser(path), sections).parse()
        parsed.append((path, sections))
    return parsed


def _reject_unknown_options(parsed: Sequence[tuple[str, _Sections]]) -> None:
    """Typos in our own groups would silently keep a default, e.g. dry_run=False."""
    known = {g.name: {o.dest for o in opts} for g, opts in option_groups() if g is not None}
    for path, sections in parsed:
        for section, values in sections.items():
            names = known.get(section.lower(), set(values))
            for name in sorted(set(values) - names):
                raise SettingsError(
                    f"unknown option [{section}] {name} in {path}; "
                    f"known options: {', '.join(sorted(names))}",
                    path=path,
                    option=f"[{section}] {name}",
                )


def _convert_every_option(conf: cfg.ConfigOpts, parsed: Sequence[tuple[str, _Sections]]) -> None:
    for group, opts in option_groups():
        group_name = group.name if group else "DEFAULT"
        for opt in opts:
            try:
                _ = conf[opt.dest] if group is None else conf[group.name][opt.dest]
            except (ValueError, cfg.Error) as exc:
                path, where, raw = _locate(group_name, opt.dest, parsed)
                reason = str(exc)
                if raw is not None:
                    try:
                        opt.type(raw)
                    except ValueError as conversion:
                        reason = str(conversion)
                if opt.secret:
                    reason = f"{_SECRET_MASK} is not a valid value"
                name = f"[{group_name}] {opt.dest}"
                raise SettingsError(
                    f"invalid value for option {name} in {where}: {reason}", path=path, option=name
                ) from exc


def _locate(
    group: str, name: str, parsed: Sequence[tuple[str, _Sections]]
) -> tuple[str | None, str, str | None]:
    """Where the effective value of an option comes from: (file, description, raw text)."""
    variable = f"OS_{group.upper()}__{name.upper()}"
    if variable in os.environ:
        return None, f"environment variable {variable}", os.environ[variable]
    for path, sections in reversed(parsed):
        for section, values in sections.items():
            if section.lower() == group.lower() and name in values:
                return path, path, values[name][-1]
    return None, "the configuration", None
