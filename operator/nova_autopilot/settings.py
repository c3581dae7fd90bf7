"""Configuration of nova-autopilot: option definitions and loading (oslo.config).

There is no global configuration object. :func:`build_conf` returns a fresh
``ConfigOpts`` with every option registered, :func:`load` also parses the
configuration files, and :func:`list_opts` feeds ``oslo-config-generator``.
Every problem found while loading is raised as :class:`SettingsError`, whose
message names the file and the option concerned.

oslo.messaging's own options (``[DEFAULT] transport_url``,
``[oslo_messaging_notifications]``, ``[oslo_messaging_rabbit]``...) are not
defined here: oslo.messaging registers them on the same ``ConfigOpts`` when a
transport is created, and documents them under its own generator namespace.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Mapping, Sequence

from oslo_config import cfg, types

__all__ = ["PROJECT", "SettingsError", "build_conf", "list_opts", "load"]

PROJECT = "nova-autopilot"
_SECRET_MASK = "***"
_NAME = r"^[A-Za-z0-9._:-]+$"  # AMQP exchange/queue names used by the daemon


class SettingsError(ValueError):
    """The configuration cannot be used; the message names the file and option."""

    def __init__(self, message: str, *, path: str | None = None, option: str | None = None):
        super().__init__(message)
        self.path = path
        self.option = option


def _seconds(name: str, default: int, help_text: str, *, minimum: int = 1) -> cfg.Opt:
    return cfg.IntOpt(name, default=default, min=minimum, help=help_text)


def _budget_opts() -> list[cfg.Opt]:
    opts: list[cfg.Opt] = []
    for name, where in (
        ("budget_global", "in all"),
        ("budget_per_project", "in one project"),
        ("budget_per_host", "on one compute host"),
        ("budget_per_zone", "in one availability zone"),
    ):
        opts.append(
            cfg.IntOpt(
                name,
                default=0,
                min=0,
                help=f"Most operations, of all policies together, {where} within "
                f"{name}_window; more is refused. 0 disables it.",
            )
        )
        opts.append(_seconds(f"{name}_window", 3600, f"Seconds over which {name} counts."))
    return opts


def _option_groups() -> list[tuple[cfg.OptGroup | None, list[cfg.Opt]]]:
    """Build fresh option objects, so that no two ConfigOpts share state."""
    default: list[cfg.Opt] = [
        cfg.StrOpt(
            "state_dir",
            default="/var/lib/nova-autopilot",
            help="Directory holding the runtime state of the daemon, including the SQLite "
            "journal when [journal] connection is empty. Must be writable by the service.",
        ),
        _seconds(
            "stop_timeout",
            30,
            "Seconds the daemon takes at most to stop on SIGTERM: it stops taking messages "
            "(the broker keeps what was not handled), lets running steps end and leaves "
            "waiting operations in the journal, where the next start resumes them.",
        ),
        _seconds(
            "wedged_after",
            20,
            "Seconds after which a message still in a handler (for example a journal write "
            "blocked on a database lock), or an operation worker pool that has not run a "
            "trivial task, counts as wedged. While anything is wedged the daemon stops "
            "sending WATCHDOG=1 to systemd, which restarts it after WatchdogSec; keep it "
            "below the unit's WatchdogSec.",
        ),
    ]
    notifications: list[cfg.Opt] = [
        cfg.StrOpt(
            "exchange",
            default="nova",
            regex=_NAME,
            help="Exchange on which Nova publishes its notifications (Nova's "
            "control_exchange). The broker is given by oslo.messaging's own "
            "[oslo_messaging_notifications] transport_url or [DEFAULT] transport_url.",
        ),
        cfg.ListOpt(
            "topics",
            default=["versioned_notifications"],
            help="Topics of Nova's versioned notifications to listen to; must match "
            "Nova's [notifications] versioned_notifications_topics.",
        ),
        cfg.ListOpt(
            "legacy_topics",
            default=[],
            help="Topics of Nova's legacy (unversioned) notifications to listen to as "
            "well, for example 'notifications'. Empty: legacy notifications are ignored.",
        ),
        cfg.StrOpt(
            "pool",
            default="nova-autopilot",
            regex=_NAME,
            help="Listener pool name. The daemon consumes from its own pool queue, so "
            "it receives a copy of every notification and never takes messages away "
            "from other consumers of the same topics. Cannot be empty.",
        ),
        cfg.IntOpt(
            "executor_threads",
            default=8,
            min=1,
            help="Number of threads handling incoming messages concurrently, for "
            "notifications and, separately, for operator requests.",
        ),
        cfg.ListOpt(
            "retry_delays",
            item_type=types.Integer(min=1),
            default=[5, 30, 120],
            help="Delays in seconds between successive redeliveries of a message (a "
            "notification or an operator request) whose processing failed temporarily. "
            "After the last delay the message is dead-lettered. Empty: dead-letter at the "
            "first temporary failure.",
        ),
        cfg.StrOpt(
            "dead_letter_queue",
            default="nova-autopilot.notifications.dead",
            regex=_NAME,
            help="Queue receiving notifications that could not be processed "
            "(malformed, oversized, or still failing after all retry_delays).",
        ),
    ]
    requests: list[cfg.Opt] = [
        cfg.StrOpt(
            "broker_url",
            default="",
            secret=True,
            help="AMQP URL of the broker carrying operator requests, for example "
            "amqp://user:password@rabbit:5672/vhost. Empty: the notification transport "
            "URL of oslo.messaging is used.",
        ),
        cfg.StrOpt(
            "exchange",
            default="nova-autopilot.requests",
            regex=_NAME,
            help="Exchange to which operators publish requests.",
        ),
        cfg.StrOpt(
            "queue",
            default="nova-autopilot.requests",
            regex=_NAME,
            help="Durable queue, bound to the requests exchange, from which requests are consumed.",
        ),
        cfg.IntOpt(
            "prefetch",
            default=16,
            min=1,
            max=65535,
            help="Maximum number of unacknowledged requests delivered to the daemon at once.",
        ),
        cfg.IntOpt(
            "max_message_bytes",
            default=65536,
            min=1,
            help="Largest accepted request body in bytes; larger requests are "
            "dead-lettered without being parsed.",
        ),
        cfg.StrOpt(
            "results_exchange",
            default="nova-autopilot.results",
            regex=_NAME,
            help="Exchange on which the outcome of each request is published.",
        ),
        cfg.StrOpt(
            "dead_letter_exchange",
            default="nova-autopilot.dead",
            regex=_NAME,
            help="Exchange receiving requests that were rejected (unsigned, badly "
            "signed, expired, malformed or oversized).",
        ),
        cfg.StrOpt(
            "signing_keys_file",
            default="/etc/nova-autopilot/signing-keys.yaml",
            help="YAML file with the keys that requests must be signed with. Keep it "
            "readable only by the service user.",
        ),
        _seconds(
            "max_age",
            300,
            "Seconds after its creation time during which a request is accepted; "
            "older requests are rejected as expired.",
        ),
        _seconds(
            "max_clock_skew",
            60,
            "Seconds by which a request's creation time may be ahead of this daemon's "
            "clock; requests dated further in the future are rejected (reason future).",
        ),
        cfg.StrOpt(
            "authorization_file",
            default="",
            help="YAML file saying, per signing key, which request types it may send, for "
            "which projects, which actions and which flavors (docs/security.md). Keep it "
            "readable only by the service user. Empty: every valid signature may ask for "
            "everything. Needs require_signatures. Reloaded on SIGHUP.",
        ),
        cfg.BoolOpt(
            "require_signatures",
            default=True,
            help="Refuse requests that are not signed with a key of signing_keys_file "
            "(HMAC-SHA256, see docs/requests.md). Turn off only on a broker that nobody "
            "else can publish to.",
        ),
        cfg.StrOpt(
            "signing_key_id",
            default="",
            help="The key of signing_keys_file that `nova-autopilot send` signs with.",
        ),
    ]
    cloud: list[cfg.Opt] = [
        cfg.StrOpt(
            "cloud",
            default="nova-autopilot",
            help="Name of the cloud in clouds.yaml used to reach Nova. Empty: the "
            "OS_* environment variables are used instead.",
        ),
        cfg.StrOpt(
            "region_name",
            default="",
            help="Region of the Nova endpoint. Empty: the region of the cloud entry.",
        ),
        _seconds(
            "api_timeout",
            60,
            "Seconds to wait for a response to one API call before it fails.",
        ),
        cfg.IntOpt(
            "workers",
            default=10,
            min=1,
            help="Threads carrying out operation steps (each step makes Nova calls): how "
            "many operations can make progress at the same moment. Waiting operations "
            "hold none. How many may be unfinished is [guards] max_concurrent_operations.",
        ),
        _seconds(
            "poll_interval",
            10,
            "Seconds between two batched polls of server states, used when an "
            "expected notification does not arrive.",
        ),
        cfg.StrOpt(
            "rescue_image",
            default="",
            help="Image ID or name booted when rescuing a server. Empty: Nova's default "
            "(the server's own image).",
        ),
    ]
    policies: list[cfg.Opt] = [
        cfg.StrOpt(
            "path",
            default="/etc/nova-autopilot/policies.yaml",
            help="YAML policy file, or a directory whose *.yaml and *.yml files are read "
            "in name order.",
        ),
    ]
    journal: list[cfg.Opt] = [
        cfg.StrOpt(
            "connection",
            default="",
            secret=True,
            help="SQLAlchemy URL of the journal database. Empty: the SQLite file "
            "journal.sqlite in [DEFAULT] state_dir.",
        ),
        cfg.IntOpt(
            "retention_days",
            default=90,
            min=1,
            help="Days after which finished journal entries are deleted.",
        ),
    ]
    guards: list[cfg.Opt] = [
        cfg.BoolOpt(
            "dry_run",
            default=False,
            help="Global dry run: matched operations are journaled and logged but no "
            "Nova write call is made.",
        ),
        cfg.BoolOpt(
            "require_approval",
            default=False,
            help="Every decision that would act on Nova awaits an operator's approval "
            "first, as under a policy's 'mode: approve': it is journaled in phase "
            "awaiting_approval and announced, and runs only when an operation.approve "
            "request names it (docs/requests.md).",
        ),
        _seconds(
            "approval_timeout",
            3600,
            "Seconds an operation awaits approval; without an answer by then it ends "
            "'expired' and never runs.",
        ),
        cfg.IntOpt(
            "max_concurrent_operations",
            default=10,
            min=1,
            help="Most operations unfinished at the same time, counted in the journal "
            "(waiting ones included, and those of other daemons sharing it); a decision "
            "beyond it is refused with the guard 'concurrency'. How many run a step at "
            "the same moment is [cloud] workers.",
        ),
        cfg.FloatOpt(
            "nova_write_rate",
            default=2.0,
            min=0.01,
            help="Maximum rate of Nova write calls (resize, confirm, revert, rescue, "
            "unrescue, lock, unlock, quota updates: every call but a read), in calls per "
            "second, across all operations. A write waits for its turn, at most "
            "[cloud] api_timeout seconds, then is retried like any temporary failure. "
            "Reads are not limited.",
        ),
        cfg.IntOpt(
            "nova_write_burst",
            default=3,
            min=1,
            help="Nova write calls allowed at once after a quiet spell, before "
            "nova_write_rate paces them. 1: no burst.",
        ),
        _seconds(
            "default_cooldown",
            1800,
            "Seconds during which a server is not operated on again after an "
            "operation, unless its policy sets its own cooldown. 0 disables it.",
            minimum=0,
        ),
        cfg.IntOpt(
            "breaker_failures",
            default=5,
            min=0,
            help="Failed operations (outcome failed, timed_out or reverted) of all "
            "policies within breaker_window that open the global circuit breaker, which "
            "then refuses every decision. 0 disables it.",
        ),
        cfg.IntOpt(
            "policy_breaker_failures",
            default=3,
            min=0,
            help="Failed operations of one policy within breaker_window that open that "
            "policy's circuit breaker, which then refuses the policy's decisions. A "
            "policy's limits.breaker overrides it. 0 disables it.",
        ),
        _seconds(
            "breaker_window",
            600,
            "Seconds over which failures are counted, for the global breaker and, unless "
            "a policy sets its own, for each policy's.",
        ),
        _seconds(
            "breaker_half_open_after",
            1800,
            "Seconds after which an open breaker lets one trial operation through; "
            "its success closes the breaker again, its failure opens it again.",
        ),
        cfg.IntOpt(
            "loop_max_per_server",
            default=5,
            min=0,
            help="Most operations on one server, by any policy, within loop_window; "
            "more is refused as a loop and logged as an error. 0 disables it.",
        ),
        _seconds("loop_window", 3600, "Seconds over which loop_max_per_server counts."),
        *_budget_opts(),
    ]
    intake: list[cfg.Opt] = [
        cfg.IntOpt(
            "max_message_bytes",
            default=1048576,
            min=1,
            help="Largest accepted notification in bytes (default 1 MiB); larger "
            "messages are dead-lettered without being parsed.",
        ),
        cfg.IntOpt(
            "max_json_depth",
            default=32,
            min=1,
            max=512,
            help="Deepest accepted nesting of JSON objects and arrays in an incoming "
            "message (notification or operator request); deeper messages are dead-lettered.",
        ),
    ]
    logging: list[cfg.Opt] = [
        cfg.StrOpt(
            "level",
            default="INFO",
            ignore_case=True,
            mutable=True,
            choices=[
                ("DEBUG", "everything, including the libraries' own debug messages"),
                ("INFO", "every decision and operation step"),
                ("WARNING", "only problems"),
                ("ERROR", "only failures"),
            ],
            help="Lowest level logged (case-insensitive). Unless it is DEBUG, the "
            "libraries (oslo.messaging, kombu, amqp, openstacksdk) only log warnings "
            "and errors. SIGHUP applies a new value, together with the policies and the "
            "signing keys.",
        ),
        cfg.StrOpt(
            "format",
            default="auto",
            ignore_case=True,
            choices=[
                ("auto", "json when stdout is not a terminal, console otherwise"),
                ("json", "one JSON object per line"),
                ("console", "human-readable key=value lines"),
            ],
            help="Log output format on stdout.",
        ),
    ]
    metrics: list[cfg.Opt] = [
        cfg.BoolOpt(
            "enabled",
            default=True,
            help="Serve /metrics (Prometheus), /healthz, /readyz and /status over HTTP "
            "(docs/metrics.md).",
        ),
        cfg.HostAddressOpt(
            "bind_host",
            default="127.0.0.1",
            help="Address the HTTP endpoints listen on. The endpoints have no "
            "authentication: keep them on loopback or a management network.",
        ),
        cfg.PortOpt(
            "port",
            default=9464,
            help="Port of the HTTP endpoints. 0: a free port chosen at start, logged "
            "as endpoints.listening (`nova-autopilot status` then cannot find it).",
        ),
        _seconds(
            "cloud_check_interval",
            30,
            "Seconds between two background requests to Nova that tell /readyz whether "
            "the cloud is reachable; it counts as reachable while its last answer is "
            "younger than three intervals. Probes never call Nova themselves.",
        ),
    ]
    sweeps: list[cfg.Opt] = [
        cfg.BoolOpt(
            "enabled",
            default=True,
            help="Sweep: list the servers in VERIFY_RESIZE, RESCUE or ERROR (after launch) "
            "now and then and hand each to the policies as an event of source sweep, so "
            "that a lost notification loses nothing (docs/sweeps.md). A sweep asks Nova "
            "nothing while no enabled policy listens to a sweep event type.",
        ),
        _seconds(
            "interval",
            300,
            "Seconds between two sweeps; the first one runs when the daemon has started.",
            minimum=10,
        ),
    ]

    coordination: list[cfg.Opt] = [
        cfg.StrOpt(
            "backend_url",
            default="",
            help="The coordination backend several daemons of one cloud share (tooz): "
            "redis://127.0.0.1:6379 (recommended), etcd3+http://host:2379 or "
            "zookeeper://host:2181. Empty: a single daemon, with in-process locks, always "
            "the leader. A non-empty value needs a [journal] connection on PostgreSQL or "
            "MariaDB (docs/scaling.md).",
        ),
        cfg.StrOpt(
            "member_id",
            default="",
            help="This daemon's name in the group and as the owner of its operations in "
            "the journal. Empty: host name and process id.",
        ),
        cfg.StrOpt(
            "group",
            default="nova-autopilot",
            help="The group the daemons of one cloud join; it also prefixes their lock "
            "names, so two clouds may share one backend under two group names.",
        ),
        _seconds(
            "lock_timeout",
            30,
            "Seconds a daemon that stopped heartbeating keeps its locks, its group "
            "membership and its journal leases: how long its operations wait before a "
            "survivor takes them over.",
            minimum=2,
        ),
        _seconds(
            "heartbeat_interval",
            5,
            "Seconds between two heartbeats (membership, locks, leader, journal leases); "
            "keep it well below lock_timeout.",
        ),
        _seconds(
            "lock_wait",
            10,
            "Seconds a decision waits for its server's lock, held by another daemon that "
            "is deciding on that server, before the message is tried again later.",
        ),
        _seconds(
            "takeover_interval",
            10,
            "Seconds between two looks for the unfinished operations of daemons that "
            "left the group, which this daemon then claims and resumes.",
        ),
    ]

    def group(name: str, title: str) -> cfg.OptGroup:
        return cfg.OptGroup(name, title=title)

    return [
        (None, default),
        (group("notifications", "Nova notifications (oslo.messaging)"), notifications),
        (group("requests", "Operator requests (kombu)"), requests),
        (group("cloud", "Connection to Nova (openstacksdk)"), cloud),
        (group("policies", "Automation policies"), policies),
        (group("journal", "Journal of operations"), journal),
        (group("guards", "Safety limits"), guards),
        (group("intake", "Limits on incoming messages"), intake),
        (group("logging", "Logging"), logging),
        (group("metrics", "Metrics and health endpoints (HTTP)"), metrics),
        (group("sweeps", "Sweeps of Nova's server states"), sweeps),
        (group("coordination", "Several daemons on one cloud (tooz)"), coordination),
    ]


def list_opts() -> list[tuple[str, list[cfg.Opt]]]:
    """Return ``(group name, options)`` pairs for ``oslo-config-generator``."""
    return [(g.name if g else "DEFAULT", opts) for g, opts in _option_groups()]


def build_conf() -> cfg.ConfigOpts:
    """Return a new, unparsed ConfigOpts with every nova-autopilot option registered."""
    conf = cfg.ConfigOpts()
    for group, opts in _option_groups():
        if group is not None:
            conf.register_group(group)
        conf.register_opts(opts, group=group)
    return conf


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
    known = {g.name: {o.dest for o in opts} for g, opts in _option_groups() if g is not None}
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
    for group, opts in _option_groups():
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
