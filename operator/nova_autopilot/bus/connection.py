# mypy: disable-error-code="no-untyped-call"
"""Where the brokers are and how to connect to them, read the way Nova reads it.

The notification broker is oslo.messaging's own configuration, so an operator
writes it exactly as for Nova: ``[oslo_messaging_notifications] transport_url``
(else ``[DEFAULT] transport_url``) and the ``[oslo_messaging_rabbit]`` options
(TLS, heartbeats, login method, failover, retry intervals, durable, HA and
quorum queues, prefetch), including their overrides in the URL's query
(``rabbit://...?ssl=1``). oslo.messaging registers and parses them; the
connection itself is made with kombu (see ``docs/messaging.md`` for why).

The request broker is ``[requests] broker_url`` when set, else the same
broker as the notifications.

``memory://`` (or ``kombu+memory:////``, the form oslo.messaging's Notifier
accepts too) is kombu's in-process broker, for the embedded demo and fast
tests: the URL is the only switch. oslo.messaging's ``fake://`` driver is
refused: nothing published there could ever reach the bus.
"""

from __future__ import annotations

import os
import random
import re
import socket
import ssl
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import quote, urlsplit

import amqp.exceptions
from kombu.connection import Connection
from kombu.exceptions import KombuError
from oslo_config import cfg

from nova_autopilot.errors import AutopilotError, PermanentError, TemporaryError
from nova_autopilot.settings import SettingsError

__all__ = [
    "BROKER_ERRORS",
    "DEFAULT_NOTIFICATION_PREFETCH",
    "Backoff",
    "BrokerRefused",
    "BrokerSettings",
    "BrokerUnavailable",
    "broker_error",
    "check_url",
    "connect",
    "notification_broker",
    "open_connection",
    "register_oslo_options",
    "request_broker",
]

#: Prefetch of the notification consumer when ``rabbit_qos_prefetch_count`` is 0
#: (oslo.messaging's "unlimited", which the daemon never uses). A busy bus is decided
#: in batches of what is at hand, up to half of it: a thousand lets a batch's fixed
#: costs (its guard facts read once, one commit) spread over hundreds of messages.
DEFAULT_NOTIFICATION_PREFETCH = 1000
_MEMORY_TRANSPORTS = ("memory", "kombu+memory")
_RABBIT_GROUP = "oslo_messaging_rabbit"
_SSL_VERSIONS = {
    "tlsv1": "PROTOCOL_TLSv1",
    "sslv23": "PROTOCOL_SSLv23",
    "tlsv1_1": "PROTOCOL_TLSv1_1",
    "tlsv1_2": "PROTOCOL_TLSv1_2",
}


@dataclass(frozen=True, slots=True)
class BrokerSettings:
    """Everything needed to connect to one broker and declare queues the way
    oslo.messaging does. ``urls`` hold credentials: they are never shown;
    ``display`` is the same without them."""

    urls: tuple[str, ...] = field(repr=False)
    display: str
    in_memory: bool = False
    ssl: bool | Mapping[str, Any] = field(default=False, repr=False)
    login_method: str = "AMQPLAIN"
    heartbeat: int = 60
    heartbeat_rate: int = 3
    failover_strategy: str = "round-robin"
    retry_interval: float = 1.0
    retry_backoff: float = 2.0
    retry_max: float = 30.0
    #: Durability and arguments of queues shared with oslo.messaging's rules
    #: (amqp_durable_queues, amqp_auto_delete, rabbit_ha_queues, rabbit_quorum_queue).
    durable: bool = False
    auto_delete: bool = False
    queue_arguments: Mapping[str, Any] = field(default_factory=dict)
    quorum: bool = False
    prefetch: int = DEFAULT_NOTIFICATION_PREFETCH
    connection_name: str = "nova-autopilot"
    connect_timeout: float = 10.0

    @property
    def poll_interval(self) -> float:
        """Longest time the consuming thread may block without looking at its
        heartbeat, its stop flag and the handlers' outcomes."""
        if self.heartbeat > 0:
            return min(0.25, self.heartbeat / max(self.heartbeat_rate, 1) / 2)
        return 0.25

    @property
    def heartbeat_check_interval(self) -> float:
        """How often a connection that sits idle must look at its heartbeat
        (``Connection.heartbeat_check``): twice per heartbeat it should send, so
        that RabbitMQ never misses one; 0 when heartbeats are off."""
        if self.in_memory or self.heartbeat <= 0:
            return 0.0
        return self.heartbeat / max(self.heartbeat_rate, 1) / 2

    @property
    def own_queue_arguments(self) -> dict[str, Any]:
        """Arguments of the daemon's own durable queues (dead-letter, delay,
        requests): quorum queues when the deployment uses them."""
        return {"x-queue-type": "quorum"} if self.quorum else {}


def register_oslo_options(conf: cfg.ConfigOpts) -> dict[str, cfg.Opt]:
    """Register oslo.messaging's transport, notification and rabbit options on
    ``conf`` (equal to the ones oslo.messaging registers itself: no conflict).
    Returns the ``[oslo_messaging_rabbit]`` options by name."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # importing oslo.messaging warns about eventlet
        from oslo_messaging import opts as oslo_opts

    wanted = {"DEFAULT", "oslo_messaging_notifications", _RABBIT_GROUP}
    rabbit: dict[str, cfg.Opt] = {}
    for group, opts in oslo_opts.list_opts():
        name = group or "DEFAULT"
        if name in wanted:
            conf.register_opts(opts, group=None if name == "DEFAULT" else name)
        if name == _RABBIT_GROUP:
            rabbit = {opt.dest: opt for opt in opts}
    return rabbit


def notification_broker(conf: cfg.ConfigOpts) -> BrokerSettings:
    """The broker Nova publishes its notifications to, from oslo.messaging's options.
    A URL no connection could be made from is a :class:`SettingsError` naming its
    option (see :func:`check_url`)."""
    opts = register_oslo_options(conf)
    url, option = _notification_url(conf)
    check_url(conf, url, option)
    rabbit = _rabbit_options(conf, opts, url, option)
    prefetch = int(rabbit["rabbit_qos_prefetch_count"]) or DEFAULT_NOTIFICATION_PREFETCH
    return _settings(conf, url, rabbit, prefetch=prefetch, purpose="notifications")


def request_broker(conf: cfg.ConfigOpts) -> BrokerSettings:
    """The broker carrying operator requests and results: ``[requests] broker_url``,
    or the notification broker when it is empty. A URL no connection could be made
    from is a :class:`SettingsError` naming its option (see :func:`check_url`)."""
    opts = register_oslo_options(conf)
    url, option = conf.requests.broker_url, "[requests] broker_url"
    if not url:
        url, option = _notification_url(conf)
    check_url(conf, url, option)
    transport = url if _is_transport_url(url) else "rabbit://"
    rabbit = _rabbit_options(conf, opts, transport, option)
    return _settings(conf, url, rabbit, prefetch=conf.requests.prefetch, purpose="requests")


def _notification_url(conf: cfg.ConfigOpts) -> tuple[str, str]:
    """The notification broker's URL, and the option it comes from."""
    url: str = conf.oslo_messaging_notifications.transport_url
    if url:
        return url, "[oslo_messaging_notifications] transport_url"
    return conf.transport_url or "rabbit://", "[DEFAULT] transport_url"


#: The schemes of a broker URL: oslo.messaging's transport URLs (``rabbit``, ``kombu``,
#: ``kombu+<transport>``), kombu's AMQP URLs and the in-process broker.
_SCHEMES = ("rabbit", "amqp", "amqps", "pyamqp", "kombu", "memory")
_URL_SHAPE = "rabbit://user:password@host:5672/vhost"


def check_url(conf: cfg.ConfigOpts, url: str, option: str) -> None:
    """Raise :class:`SettingsError` naming ``option`` when no connection could be made
    from ``url``: a scheme no broker here speaks (oslo.messaging's ``fake://`` driver
    included), a port that is not one (0, above 65535, not a number), an address that
    cannot be read. The message never shows the URL, which may hold a password."""
    reason = _url_problem(conf, url)
    if reason is not None:
        raise SettingsError(f"{option}: {reason}", option=option)


def _url_problem(conf: cfg.ConfigOpts, url: str) -> str | None:
    import oslo_messaging

    scheme, separator, _ = url.partition("://")
    scheme = scheme.lower()
    if not separator or not re.fullmatch(r"[a-z][a-z0-9+.-]*", scheme):
        return f"not a broker URL ({_URL_SHAPE}): it does not start with a scheme and ://"
    if scheme == "fake":
        return (
            "the transport URL fake:// is oslo.messaging's test driver, which kombu cannot "
            "read; use kombu+memory://// for an in-process broker"
        )
    if scheme not in _SCHEMES and not scheme.startswith("kombu+"):
        return (
            f"not a broker URL ({_URL_SHAPE}): unknown scheme {scheme!r}, the scheme must "
            f"be one of {', '.join(_SCHEMES)} or kombu+<transport>"
        )
    if scheme in _MEMORY_TRANSPORTS:
        return None
    try:
        if _is_transport_url(url):  # several hosts, each with its port
            ports = [host.port for host in oslo_messaging.TransportURL.parse(conf, url).hosts]
        else:
            ports = [urlsplit(url).port]
    except ValueError as exc:  # its text may quote the URL: never shown
        if "ipv6" in str(exc).lower():
            return f"not a broker URL ({_URL_SHAPE}): an IPv6 address without its closing ]"
        return f"not a broker URL ({_URL_SHAPE}): a port is not a number from 1 to 65535"
    for port in ports:
        if port is not None and not 0 < port <= 65535:
            return f"not a broker URL ({_URL_SHAPE}): port {port} is not in 1-65535"
    return None


def connect(settings: BrokerSettings, *, confirm_publish: bool = True) -> Connection:
    """A new, not yet connected kombu connection (``.connect()`` opens it); with
    ``confirm_publish``, each publish waits for the broker's confirmation (without,
    the caller makes sure otherwise: an AMQP transaction, say)."""
    if settings.in_memory:
        return Connection("memory://", transport_options={"polling_interval": 0.005})
    return Connection(
        ";".join(settings.urls),
        ssl=_ssl_argument(settings.ssl),
        login_method=settings.login_method,
        heartbeat=settings.heartbeat,
        failover_strategy=settings.failover_strategy,
        connect_timeout=settings.connect_timeout,
        transport_options={
            "confirm_publish": confirm_publish,
            "client_properties": {
                "connection_name": settings.connection_name,
                "capabilities": {
                    "authentication_failure_close": True,
                    "connection.blocked": True,
                    "consumer_cancel_notify": True,
                },
            },
        },
    )


class BrokerUnavailable(TemporaryError):
    """The broker cannot be reached now (connection refused, unknown host,
    time-out, connection lost): the same call may succeed later."""


class BrokerRefused(PermanentError):
    """The broker answers but refuses: wrong user or password, a vhost that does
    not exist or that the user may not use, an entity it will not declare."""


#: What kombu and py-amqp raise when talking to the broker fails.
BROKER_ERRORS: Final = (OSError, amqp.exceptions.AMQPError, KombuError)


def broker_error(settings: BrokerSettings, error: BaseException) -> AutopilotError:
    """``error``, raised by kombu or py-amqp while talking to the broker of
    ``settings``, in the project's vocabulary; its message names the broker
    (without credentials) and what went wrong, in one line."""
    where = f"broker {settings.display}"
    if isinstance(error, amqp.exceptions.AccessRefused):
        return BrokerRefused(f"{where} refused the login: wrong user or password ({_reply(error)})")
    if isinstance(error, amqp.exceptions.NotAllowed):
        return BrokerRefused(
            f"{where} refused the connection: the vhost does not exist or the user may not "
            f"use it ({_reply(error)})"
        )
    if isinstance(error, amqp.exceptions.ConsumerCancelled):  # its reply text is the tag
        return BrokerUnavailable(
            f"{where} cancelled the consumer: its queue was deleted, or its vhost, or the "
            "queue's node went away"
        )
    if isinstance(error, amqp.exceptions.PreconditionFailed):
        return BrokerRefused(
            f"{where} refused a declaration: {_reply(error)}: it exists with other settings "
            "(delete it once drained, or match them: [notifications] pool_durable, "
            "[oslo_messaging_rabbit])"
        )
    if isinstance(error, amqp.exceptions.ChannelError):
        return BrokerRefused(f"{where} refused: {_reply(error)}")
    if isinstance(error, socket.gaierror):
        return BrokerUnavailable(f"{where} unreachable: unknown host ({error.strerror or error})")
    if isinstance(error, ConnectionRefusedError):
        return BrokerUnavailable(f"{where} unreachable: connection refused")
    if isinstance(error, TimeoutError):
        return BrokerUnavailable(f"{where} unreachable: no answer (time-out)")
    if isinstance(error, amqp.exceptions.AMQPError):
        return BrokerUnavailable(f"{where} closed the connection: {_reply(error)}")
    text = str(error).strip().splitlines()
    return BrokerUnavailable(f"{where} unreachable: {text[0] if text else type(error).__name__}")


def open_connection(settings: BrokerSettings, *, confirm_publish: bool = True) -> Connection:
    """A connection to the broker of ``settings``, opened; what stops it is raised
    as :class:`BrokerUnavailable` or :class:`BrokerRefused` (see :func:`broker_error`)."""
    conn = connect(settings, confirm_publish=confirm_publish)
    try:
        conn.connect()
    except BROKER_ERRORS as error:
        conn.collect()
        raise broker_error(settings, error) from error
    return conn


def _reply(error: BaseException) -> str:
    """An AMQP error's reply text (``NOT_ALLOWED - vhost x not found``), or its message."""
    text = getattr(error, "reply_text", "") or str(error)
    return str(text).strip().splitlines()[0] if str(text).strip() else type(error).__name__


class Backoff:
    """Delays between reconnection attempts: ``interval``, then ``interval +
    step``, ``interval + 2*step``... up to ``maximum``, each with jitter (50-100%)
    so that many clients do not reconnect in step."""

    def __init__(
        self,
        *,
        interval: float,
        step: float,
        maximum: float,
        rng: random.Random | None = None,
    ) -> None:
        self._interval, self._step, self._maximum = interval, step, maximum
        self._rng = rng or random.Random()
        self._failures = 0

    @property
    def failures(self) -> int:
        return self._failures

    def next_delay(self) -> float:
        delay = min(self._maximum, self._interval + self._step * self._failures)
        self._failures += 1
        return delay * self._rng.uniform(0.5, 1.0)

    def reset(self) -> None:
        self._failures = 0


# --- reading oslo.messaging's options ---------------------------------------------------


def _is_transport_url(url: str) -> bool:
    scheme = url.split(":", 1)[0].lower()
    return scheme in ("rabbit", "kombu", *_MEMORY_TRANSPORTS) or scheme.startswith("kombu+")


def _rabbit_options(
    conf: cfg.ConfigOpts, opts: Mapping[str, cfg.Opt], url: str, option: str
) -> dict[str, Any]:
    """``[oslo_messaging_rabbit]`` with the URL's query overriding it, as
    oslo.messaging's drivers read it (``option``: where the URL comes from)."""
    import oslo_messaging

    parsed = oslo_messaging.TransportURL.parse(conf, url)
    group = conf[_RABBIT_GROUP]
    values: dict[str, Any] = {name: group[name] for name in opts}
    for name, raw in parsed.query.items():
        if name not in opts:
            raise SettingsError(
                f"{option}: unknown option {name!r} in the query of the transport URL",
                option=f"[{_RABBIT_GROUP}] {name}",
            )
        try:
            values[name] = opts[name].type(raw)
        except ValueError:
            raise SettingsError(
                f"{option}: invalid value for {name!r} in the query of the transport URL",
                option=f"[{_RABBIT_GROUP}] {name}",
            ) from None
    return values


def _settings(
    conf: cfg.ConfigOpts,
    url: str,
    rabbit: Mapping[str, Any],
    *,
    prefetch: int,
    purpose: str,
) -> BrokerSettings:
    name = f"nova-autopilot:{socket.gethostname()}:{os.getpid()}:{purpose}"
    if url.split(":", 1)[0].lower() in _MEMORY_TRANSPORTS:
        return BrokerSettings(
            urls=("memory://",), display="memory://", in_memory=True, prefetch=prefetch
        )
    if _is_transport_url(url):
        urls, hosts = _kombu_urls(conf, url)
        tls: bool | Mapping[str, Any] = _ssl_options(rabbit, hosts) if rabbit["ssl"] else False
    else:
        urls, hosts = [url], [urlsplit(url).hostname or ""]
        secure = url.lower().startswith("amqps:") or bool(rabbit["ssl"])
        tls = _ssl_options(rabbit, hosts) if secure else False
    if rabbit["rabbit_quorum_queue"] and rabbit["rabbit_ha_queues"]:
        raise SettingsError(
            "rabbit_quorum_queue and rabbit_ha_queues cannot both be enabled",
            option=f"[{_RABBIT_GROUP}] rabbit_quorum_queue",
        )
    arguments: dict[str, Any] = {}
    if rabbit["rabbit_ha_queues"]:
        arguments["x-ha-policy"] = "all"
    if rabbit["rabbit_quorum_queue"]:
        arguments["x-queue-type"] = "quorum"
        for option, argument in (
            ("rabbit_quorum_delivery_limit", "x-delivery-limit"),
            ("rabbit_quorum_max_memory_length", "x-max-in-memory-length"),
            ("rabbit_quorum_max_memory_bytes", "x-max-in-memory-bytes"),
        ):
            if rabbit[option]:
                arguments[argument] = rabbit[option]
    return BrokerSettings(
        urls=tuple(urls),
        display=", ".join(_without_credentials(u) for u in urls),
        ssl=tls,
        login_method=rabbit["rabbit_login_method"],
        heartbeat=int(rabbit["heartbeat_timeout_threshold"]),
        heartbeat_rate=int(rabbit["heartbeat_rate"]),
        failover_strategy=rabbit["kombu_failover_strategy"],
        retry_interval=float(rabbit["rabbit_retry_interval"]),
        retry_backoff=float(rabbit["rabbit_retry_backoff"]),
        retry_max=float(rabbit["rabbit_interval_max"]),
        durable=bool(rabbit["amqp_durable_queues"] or rabbit["rabbit_quorum_queue"]),
        auto_delete=bool(rabbit["amqp_auto_delete"]),
        queue_arguments=arguments,
        quorum=bool(rabbit["rabbit_quorum_queue"]),
        prefetch=prefetch,
        connection_name=name,
    )


def _kombu_urls(conf: cfg.ConfigOpts, url: str) -> tuple[list[str], list[str]]:
    """oslo.messaging's ``rabbit://`` URL (several hosts allowed) as kombu URLs."""
    import oslo_messaging

    parsed = oslo_messaging.TransportURL.parse(conf, url)
    vhost = quote(parsed.virtual_host or "", safe="")
    hosts = parsed.hosts or [oslo_messaging.TransportHost("")]
    urls = []
    for host in hosts:
        user = quote(host.username or ("guest" if not parsed.hosts else ""), safe="")
        password = quote(host.password or ("guest" if not parsed.hosts else ""), safe="")
        hostname = host.hostname or "localhost"
        if ":" in hostname and not hostname.startswith("["):
            hostname = f"[{hostname}]"
        urls.append(f"amqp://{user}:{password}@{hostname}:{host.port or 5672}/{vhost}")
    return urls, [h.hostname or "localhost" for h in hosts]


def _ssl_options(rabbit: Mapping[str, Any], hosts: list[str]) -> bool | dict[str, Any]:
    """The TLS parameters oslo.messaging's rabbit driver gives kombu."""
    params: dict[str, Any] = {}
    version = str(rabbit["ssl_version"] or "").lower()
    if version:
        attribute = _SSL_VERSIONS.get(version)
        if attribute is None or not hasattr(ssl, attribute):
            raise SettingsError(
                f"invalid ssl_version {version!r}", option=f"[{_RABBIT_GROUP}] ssl_version"
            )
        params["ssl_version"] = getattr(ssl, attribute)
    if rabbit["ssl_key_file"]:
        params["keyfile"] = rabbit["ssl_key_file"]
    if rabbit["ssl_cert_file"]:
        params["certfile"] = rabbit["ssl_cert_file"]
    if rabbit["ssl_ca_file"]:
        params["ca_certs"] = rabbit["ssl_ca_file"]
        params["cert_reqs"] = ssl.CERT_REQUIRED
        params["server_hostname"] = hosts[0] if len(hosts) == 1 else None
    return params or True


def _ssl_argument(value: bool | Mapping[str, Any]) -> bool | dict[str, Any]:
    return dict(value) if isinstance(value, Mapping) else value


def _without_credentials(url: str) -> str:
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    user = f"{parts.username}@" if parts.username else ""
    return f"{parts.scheme}://{user}{host}{port}{parts.path}"
