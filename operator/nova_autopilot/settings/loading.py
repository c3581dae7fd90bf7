"""Loading the configuration: which files are read and in which order, and every
problem found in them raised as :class:`SettingsError`, whose message names the
file and the option concerned.

oslo.config neither refuses unknown options nor says where a bad value came
from, so the files are also parsed here, to refuse a misspelt section or option
(with its line and the nearest known names) and to name the file (or the
environment variable) of a bad value. The sections and options of the libraries
that share the file are known too: oslo.messaging's and oslo.log's, found
through their ``oslo.config.opts`` entry points (as ``oslo-config-generator``
finds them) when the package was built, shipped as ``foreign_options.yaml`` so
that reading a configuration never imports oslo.messaging; they are looked up
only when a name is not one of ours.

:func:`load` raises the first problem; :func:`check` returns every one.
"""

from __future__ import annotations

import difflib
import glob
import os
from collections.abc import Iterator, Mapping, Sequence
from functools import cache
from importlib import resources

import yaml
from oslo_config import cfg

from nova_autopilot.errors import SettingsError
from nova_autopilot.settings.groups import build_conf, option_groups

PROJECT = "nova-autopilot"
_SECRET_MASK = "***"
#: The libraries whose options may share our configuration files
#: (``oslo.config.opts`` entry point names).
FOREIGN_NAMESPACES = ("oslo.messaging", "oslo.log")


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
    conf, problems = _load(config_files, config_dirs, overrides, every=False)
    if problems:
        raise problems[0]
    return conf


def check(
    *, config_files: Sequence[str] = (), config_dirs: Sequence[str] = ()
) -> tuple[cfg.ConfigOpts, list[SettingsError]]:
    """As :func:`load`, but every problem of the files at once: ``(conf, [])`` when
    they can be used, else ``(conf, problems)``. A file that cannot be read or
    parsed at all still raises :class:`SettingsError`."""
    return _load(config_files, config_dirs, None, every=True)


def _locations(
    config_files: Sequence[str], config_dirs: Sequence[str]
) -> tuple[list[str], list[str]]:
    if not config_files and not config_dirs:
        files = list(dict.fromkeys(cfg.find_config_files(project=PROJECT, prog=PROJECT)))
        dirs = list(dict.fromkeys(cfg.find_config_dirs(project=PROJECT, prog=PROJECT)))
        return files, dirs
    return list(config_files), list(config_dirs)


def _load(
    config_files: Sequence[str],
    config_dirs: Sequence[str],
    overrides: Mapping[str, Mapping[str, object]] | None,
    *,
    every: bool,
) -> tuple[cfg.ConfigOpts, list[SettingsError]]:
    files, dirs = _locations(config_files, config_dirs)
    if config_files or config_dirs:
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
    problems = list(_unknown_options(conf, parsed))
    if problems and not every:
        return conf, problems[:1]
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
    for problem in _conversion_problems(conf, parsed):
        problems.append(problem)
        if not every:
            break
    return conf, problems


_Sections = dict[str, dict[str, list[str]]]
#: The line of each section header (option None) and option, by (section, option).
_Lines = dict[tuple[str, str | None], int]


def _expand(files: Sequence[str], dirs: Sequence[str]) -> list[str]:
    """The files in the order oslo.config reads them (later ones take precedence)."""
    expanded = list(files)
    for directory in dirs:
        pattern = os.path.join(os.path.expanduser(directory), "*.conf")
        expanded.extend(sorted(glob.glob(pattern)))
    return expanded


class _LineParser(cfg.ConfigParser):
    """oslo.config's parser, also noting the line of each section and option."""

    def __init__(self, filename: str, sections: _Sections, lines: _Lines) -> None:
        super().__init__(filename, sections)
        self.lines = lines

    def new_section(self, section: str) -> None:
        super().new_section(section)
        self.lines.setdefault((section, None), self.lineno)

    def _split_key_value(self, line: str) -> tuple[str, list[str]]:
        key, value = super()._split_key_value(line)
        self.lines.setdefault((self.section or "DEFAULT", key.strip()), self.lineno)
        return key, value


_Parsed = tuple[str, _Sections, _Lines]


def _parse_files(paths: Sequence[str]) -> list[_Parsed]:
    parsed: list[_Parsed] = []
    for path in paths:
        sections: _Sections = {}
        lines: _Lines = {}
        _LineParser(os.path.expanduser(path), sections, lines).parse()
        parsed.append((path, sections, lines))
    return parsed


def _registered(conf: cfg.ConfigOpts) -> dict[str, set[str]]:
    """The options registered on ``conf`` by group (``DEFAULT`` too), with their
    deprecated names, which oslo.config still reads."""
    known: dict[str, set[str]] = {"DEFAULT": set()}
    groups = [(None, conf._opts), *((name, conf._groups[name]._opts) for name in conf._groups)]
    for group, opts in groups:
        _add(known, group or "DEFAULT", [info["opt"] for info in opts.values()])
    return known


def _add(
    known: dict[str, set[str]], group: str, opts: Iterator[cfg.Opt] | Sequence[cfg.Opt]
) -> None:
    for opt in opts:
        known.setdefault(group, set()).add(opt.dest)
        for old in opt.deprecated_opts:
            name = old.name or opt.dest
            known.setdefault(old.group or group, set()).add(name.replace("-", "_"))


@cache
def _foreign() -> dict[str, frozenset[str]]:
    """The groups and options of :data:`FOREIGN_NAMESPACES`, as the package ships them
    (``foreign_options.yaml``, checked against the installed libraries by a test):
    reading a configuration never imports oslo.messaging."""
    text = resources.files("nova_autopilot.settings").joinpath("foreign_options.yaml")
    listed = yaml.safe_load(text.read_text(encoding="utf-8"))
    return {str(group): frozenset(map(str, names)) for group, names in listed.items()}


def _unknown_options(conf: cfg.ConfigOpts, parsed: Sequence[_Parsed]) -> Iterator[SettingsError]:
    """Misspelt sections and options: a typo would silently keep a default,
    e.g. dry_run=False. Each is named with its line and the nearest known names."""
    known = _registered(conf)

    def candidates() -> list[tuple[str, str, str | None, _Lines]]:
        return [
            (path, section, name, lines)
            for path, sections, lines in parsed
            for section, values in sections.items()
            for name in [None, *values]
            if _is_unknown(known, section, name)
        ]

    if candidates():  # names of other libraries are looked up only when needed
        for group, names in _foreign().items():
            known.setdefault(group, set()).update(names)
    for path, section, name, lines in candidates():
        group = "DEFAULT" if section.upper() == "DEFAULT" else section.lower()
        if name is None and group not in known:
            hint = _did_you_mean(section, [g for g in known if g != "DEFAULT"], "[{}]")
            yield SettingsError(
                f"{path}:{lines.get((section, None), '?')}: unknown section [{section}]{hint}",
                path=path,
                option=f"[{section}]",
                line=lines.get((section, None)),
            )
        elif name is not None and group in known and name not in known[group]:
            line = lines.get((section, name))
            hint = _did_you_mean(name, known[group], "{}")
            yield SettingsError(
                f"{path}:{line if line is not None else '?'}: unknown option [{section}] {name}"
                f"{hint}",
                path=path,
                option=f"[{section}] {name}",
                line=line,
            )


def _is_unknown(known: dict[str, set[str]], section: str, name: str | None) -> bool:
    group = "DEFAULT" if section.upper() == "DEFAULT" else section.lower()
    if group not in known:
        return name is None  # one problem for the section, none for its options
    return name is not None and name not in known[group]


def _did_you_mean(word: str, names: Sequence[str] | set[str] | frozenset[str], shape: str) -> str:
    close = difflib.get_close_matches(word.lower().replace("-", "_"), sorted(names), n=3)
    if close:
        return "; did you mean " + " or ".join(shape.format(c) for c in close) + "?"
    return ""


def _conversion_problems(
    conf: cfg.ConfigOpts, parsed: Sequence[_Parsed]
) -> Iterator[SettingsError]:
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
                yield SettingsError(
                    f"invalid value for option {name} in {where}: {reason}", path=path, option=name
                )


def _locate(group: str, name: str, parsed: Sequence[_Parsed]) -> tuple[str | None, str, str | None]:
    """Where the effective value of an option comes from: (file, description, raw text)."""
    variable = f"OS_{group.upper()}__{name.upper()}"
    if variable in os.environ:
        return None, f"environment variable {variable}", os.environ[variable]
    for path, sections, lines in reversed(parsed):
        for section, values in sections.items():
            if section.lower() == group.lower() and name in values:
                line = lines.get((section, name))
                where = path if line is None else f"{path}:{line}"
                return path, where, values[name][-1]
    return None, "the configuration", None
