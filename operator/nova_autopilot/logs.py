"""Structured logging: one JSON object per line, ids bound per block, secrets redacted.

:func:`configure` sends structlog's events and the standard library's records
(oslo.messaging, kombu, amqp, openstacksdk...) through one renderer on one
stream. Every line goes through :func:`redact` first, so a secret cannot reach
the output however it was logged: as a key-value, nested in a payload, inside
a URL or a header, in a message or in an exception.
"""

from __future__ import annotations

import contextlib
import datetime
import functools
import json
import logging
import re
import sys
import uuid
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final, TextIO, cast

import orjson

if TYPE_CHECKING:
    # structlog (and rich, which it imports when installed) is imported where it is used,
    # not with this module: the commands that only redact never load it.
    import structlog
    from structlog.typing import EventDict, Processor, WrappedLogger

__all__ = [
    "LEVELS",
    "REDACTED",
    "bound",
    "configure",
    "get_logger",
    "redact",
    "redacted_document",
    "set_level",
]

REDACTED = "***"
LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
_FORMATS = ("auto", "json", "console")
#: Libraries whose INFO/DEBUG chatter is only wanted when debugging.
_NOISY_LOGGERS = (
    "amqp",
    "kombu",
    "oslo_messaging",
    "oslo_config",
    "openstack",
    "keystoneauth",
    "urllib3",
    "stevedore",
    "futurist",
)
_LEADING_KEYS = ("timestamp", "level", "logger", "event")
_MAX_DEPTH = 64
_TOO_DEEP = "<too deeply nested>"

# --- redaction ---------------------------------------------------------------------------

_SECRET_WORDS = (
    "password|passwd|pass|passphrase|token|secret|signature|credential|authorization|cookie"
)
_KEY_QUALIFIERS = "private|signing|secret|api|encryption|hmac|shared|master"
# Applied to a key name lower-cased and stripped of separators: "X-Auth-Token" -> "xauthtoken".
_SECRET_NAME = re.compile(rf"(?:{_SECRET_WORDS})s?$|^(?:{_KEY_QUALIFIERS})?keys?$")
_SEPARATORS = re.compile(r"[\W_]+")
# Cheap test run first on every string (substring tests are much faster than a regex):
# each secret word above contains one of these, so a string without any has no secret.
_HINTS = (
    "pass",
    "token",
    "secret",
    "signature",
    "credential",
    "authoriz",
    "cookie",
    "key",
    "bearer",
    "://",
)
# Whether a text may hold a secret at all (most do not: they are left as they are).
# Searched in the lowered text: faster than an IGNORECASE pattern or a loop over them.
_HINT = re.compile("|".join(re.escape(hint) for hint in _HINTS))
# scheme://user:password@host - the password runs to the last "@" of the authority, so a
# password containing "@" or a multi-host URL (rabbit://a:p@h1,b:q@h2/) leaks nothing.
# Every pattern starts where its previous character cannot continue it, so that a long run of
# characters is scanned once and not from each of its positions (linear, not quadratic time).
_URL_CREDENTIALS = re.compile(
    r"(?<![A-Za-z0-9+.-])(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^\s:/?#@]*:)[^\s/?#]*@"
)
_BEARER = re.compile(r"(?i)\b(?P<scheme>bearer)\s+[^\s\"',;]+")
# The start of key=value, key: value, "key": "value", 'key': 'value', \"key\": \"value\"
# (JSON in JSON): only the key and separator, so that a value is itself searched for secrets
# unless its own key names a secret.
_KEY_SEPARATOR = re.compile(
    r"""(?<![\w.-])(?P<q>\\?["']|)(?P<key>[A-Za-z_][\w.-]*)(?![\w.-])(?P=q)\s*[:=]\s*"""
)
_VALUE = re.compile(
    r"""(?ix)
        (?P<dq>"[^"\\]*(?:\\.[^"\\]*)*") | (?P<sq>'[^'\\]*(?:\\.[^'\\]*)*')
      | (?P<edq>\\"(?:(?!\\").)*\\") | (?P<esq>\\'(?:(?!\\').)*\\')
      | (?:(?:bearer|basic|digest|negotiate|token)\s+)?[^\s,;&"'{}\[\]()]+
    """
)
_QUOTES = {"dq": '"', "sq": "'", "edq": '\\"', "esq": "\\'"}


@functools.lru_cache(maxsize=4096)
def _is_secret_key(key: str) -> bool:
    name = _SEPARATORS.sub("", key.lower())
    if key[:9].lower() == "_context_":  # oslo.messaging's serialized request context
        name = name.removeprefix("context")
    return _SECRET_NAME.search(name) is not None


def _hide_values(text: str) -> str:
    parts: list[str] = []
    done = 0
    for key in _KEY_SEPARATOR.finditer(text):
        if key.start() < done or not _is_secret_key(key["key"]):
            continue
        value = _VALUE.match(text, key.end())
        if value is None:
            continue
        quote = _QUOTES.get(value.lastgroup or "", "")
        parts += [text[done : key.end()], quote, REDACTED, quote]
        done = value.end()
    return "".join(parts) + text[done:] if parts else text


def _redact_text(text: str) -> str:
    if _HINT.search(text.lower()) is None:
        return text
    text = _URL_CREDENTIALS.sub(rf"\g<head>{REDACTED}@", text)
    text = _BEARER.sub(rf"\g<scheme> {REDACTED}", text)
    return _hide_values(text)


def _redact(value: object, depth: int) -> object:
    kind = type(value)  # exact types first: documents are made of them, and this is hot
    if kind is str:
        return _redact_text(value)  # type: ignore[arg-type]
    if value is None or kind is bool or kind is int or kind is float:
        return value
    if depth >= _MAX_DEPTH:
        return _TOO_DEEP
    if kind is dict or isinstance(value, Mapping):
        deeper = depth + 1
        return {
            (key if type(key) is str else _plain_key(key)): REDACTED
            if type(key) is str and _is_secret_key(key)
            else _redact(item, deeper)
            for key, item in value.items()  # type: ignore[attr-defined]
        }
    if kind is list or isinstance(value, (list, tuple, set, frozenset)):
        items = [_redact(item, depth + 1) for item in value]  # type: ignore[attr-defined]
        return tuple(items) if isinstance(value, tuple) else items
    if isinstance(value, str):
        return _redact_text(value)
    if isinstance(value, (bool, int, float)):
        return value
    if isinstance(value, (datetime.date, datetime.time)):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    return _redact_text(repr(value))


def _plain_key(key: object) -> object:
    if key is None or isinstance(key, (str, int, float, bool)):
        return key
    return _redact_text(repr(key))


def redact(value: object) -> object:
    """Return a copy of ``value`` in which no secret survives; ``value`` is not modified.

    * A mapping key that names a secret (case-insensitive, whatever its separators:
      ``password``, ``adminPass``, ``X-Auth-Token``, ``_context_auth_token``,
      ``client_secret``, ``private_key``, ``key``, ``credentials``...; but not
      ``key_name`` or ``key_id``) has its whole value replaced by ``"***"``.
    * In strings: credentials in URLs (``amqp://user:***@host``), ``Bearer ***``,
      and ``key=value``, ``key: value`` or quoted ``"key": "value"`` fragments whose
      key names a secret (reprs, JSON text, headers, query strings, tracebacks).

    Mappings become dicts, lists and sets become lists, tuples stay tuples; numbers,
    booleans and None are kept; dates become ISO-8601 strings, UUIDs strings and any
    other object its redacted ``repr()``, so the result is always JSON-serializable.
    """
    return _redact(value, 0)


# Plain JSON only: anything else (dates, sets, str or int subclasses, dataclasses, keys
# that are not strings) makes orjson call this, and the document takes the slow path.
_PLAIN_JSON = (
    orjson.OPT_SORT_KEYS
    | orjson.OPT_PASSTHROUGH_DATETIME
    | orjson.OPT_PASSTHROUGH_SUBCLASS
    | orjson.OPT_PASSTHROUGH_DATACLASS
)
# Every ASCII character that is not a letter or a digit: what _SEPARATORS takes out of a key.
_NOT_ALNUM = bytes(c for c in range(128) if not chr(c).isalnum())
# Every byte but the brackets that open an object or an array.
_NOT_OPENING = bytes(c for c in range(256) if c not in b"{[")
_WORD_HINTS = tuple(hint.encode() for hint in _HINTS if hint.isalnum())
_OTHER_HINTS = tuple(hint.encode() for hint in _HINTS if not hint.isalnum())


def _not_plain(value: object) -> object:
    raise TypeError(type(value).__name__)


def _nothing_to_hide(raw: bytes) -> bool:
    """Whether :func:`redact` would leave as it is the plain JSON value that orjson
    serialized as ``raw``. Conservative: False whenever unsure.

    Judged on ASCII text without escapes (else False), where every string stands
    between two quotes as it is, and only its quotes are quotes: redact changes
    nothing when no key names a secret and no string value holds a secret hint that
    its rules then act on, within the depth it goes to (every bracket counted, those
    inside strings too). A secret key holds a hint once its separators are out
    (``to_ken``); so do all the keys run together without their separators. A hint
    found more often there is not placed (False); each one in the text lies in a string:
    a key (judged as a key) or a value (judged as redact judges a string)."""
    if not raw.isascii() or b"\\" in raw:
        return False
    if len(raw.translate(None, _NOT_OPENING)) >= _MAX_DEPTH:
        return False
    lowered = raw.lower()
    squeezed = lowered.translate(None, _NOT_ALNUM)
    hints = [hint for hint in _WORD_HINTS if hint in squeezed]
    expected = {hint: squeezed.count(hint) for hint in hints}
    hints += [hint for hint in _OTHER_HINTS if hint in lowered]
    if not hints:
        return True
    text = raw.decode("ascii")
    judged = set()
    for hint in hints:
        found = lowered.find(hint)
        count = 0
        while found >= 0:
            count += 1
            start = lowered.rfind(b'"', 0, found) + 1
            end = lowered.find(b'"', found)
            if start not in judged:
                judged.add(start)
                string = text[start:end]
                if raw[end + 1 : end + 2] == b":":
                    if _is_secret_key(string):
                        return False
                elif _changed_by_redaction(string):
                    return False
            found = lowered.find(hint, found + 1)
        if count != expected.get(hint, count):  # no hint overlaps itself: counts compare
            return False  # one across a separator or two strings: not placed
    return True


@functools.lru_cache(maxsize=4096)
def _short_changed(text: str) -> bool:
    return _redact_text(text) != text


def _changed_by_redaction(text: str) -> bool:
    """Whether :func:`redact` changes the string ``text``; a short one is judged once (a
    key pair's name, a flavor's, come back in every notification about the server)."""
    return _short_changed(text) if len(text) <= 64 else _redact_text(text) != text


def redacted_document(
    value: Mapping[str, object], *, plain: bool = False
) -> tuple[str, dict[str, object]]:
    """A document as the journal stores it: the JSON text of :func:`redact` applied to
    ``value`` (keys sorted) and the value that text holds.

    The same text as ``json.dumps(redact(value), sort_keys=True, default=str)`` but for
    its spacing (compact), and for NaN and infinities (``null``, as JSON has them), made
    without the copy :func:`redact` builds when nothing in ``value`` is secret, which is
    the common case: a Nova notification, a policy's parameters.

    ``plain``: ``value`` is already what a JSON parser gives (dicts with string keys,
    lists, strings, numbers, finite floats, booleans, None), as an event's payload is,
    and neither it nor the result is changed afterwards. The value held is then
    ``value`` itself when nothing in it is secret, not a copy read back from the text
    (which is equal to it)."""
    if not value:  # an operation's state when it starts, say
        return "{}", {}
    try:
        raw = orjson.dumps(value, default=_not_plain, option=_PLAIN_JSON)
    except TypeError:  # not plain JSON (orjson.JSONEncodeError is a TypeError)
        pass
    else:
        if _nothing_to_hide(raw):
            if plain and type(value) is dict:
                return raw.decode(), value
            return raw.decode(), orjson.loads(raw)
    redacted = cast("dict[str, object]", redact(dict(value)))
    text = json.dumps(redacted, sort_keys=True, default=str, separators=(",", ":"))
    return text, json.loads(text)


def _redact_event(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    return cast("EventDict", redact(event_dict))


def _leading_keys_first(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    ordered = {key: event_dict.pop(key) for key in _LEADING_KEYS if key in event_dict}
    ordered.update(event_dict)
    return ordered


# --- configuration -----------------------------------------------------------------------


class _Handler(logging.StreamHandler):  # type: ignore[type-arg]
    """The handler installed by :func:`configure`; found and replaced on reconfiguration."""

    def handleError(self, record: logging.LogRecord) -> None:
        # The standard handler prints the record's raw message and arguments to stderr, and
        # they are not redacted: name the failure only.
        failure = sys.exc_info()[0]
        reason = failure.__name__ if failure else "error"
        sys.stderr.write(f"nova-autopilot: cannot log a record of {record.name}: {reason}\n")


def _is_tty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # no isatty(), or a closed stream
        return False


def configure(*, level: str = "INFO", fmt: str = "auto", stream: TextIO | None = None) -> None:
    """Send every log line, from structlog or the standard library, to ``stream``.

    ``fmt`` is ``json`` (one object a line: ``timestamp`` in ISO-8601 UTC, ``level``,
    ``logger``, ``event`` then the key-values), ``console`` (readable lines, coloured
    only on a terminal) or ``auto`` (console on a terminal, json otherwise). ``level``
    and ``fmt`` are case-insensitive; ``stream`` defaults to the current ``sys.stdout``.
    Calling it again replaces the previous configuration instead of adding to it.
    """
    import structlog

    level_name, fmt = level.upper(), fmt.lower()
    if level_name not in LEVELS:
        raise ValueError(f"unknown log level {level!r}; expected one of {', '.join(LEVELS)}")
    if fmt not in _FORMATS:
        raise ValueError(f"unknown log format {fmt!r}; expected one of {', '.join(_FORMATS)}")
    out = sys.stdout if stream is None else stream
    tty = _is_tty(out)
    renderer: list[Processor]
    if fmt == "console" or (fmt == "auto" and tty):
        # Plain tracebacks: rich's (structlog's default when rich is installed) cost
        # a second or more each.
        renderer = [
            structlog.dev.ConsoleRenderer(
                colors=tty, exception_formatter=structlog.dev.plain_traceback
            )
        ]
    else:
        renderer = [_leading_keys_first, structlog.processors.JSONRenderer()]

    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True, key="timestamp"),
    ]
    handler = _Handler(out)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                _redact_event,
                *renderer,
            ],
        )
    )
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _Handler)]:
        root.removeHandler(old)
        old.close()
    root.addHandler(handler)
    _apply_level(level_name)

    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *shared,
            structlog.stdlib.PositionalArgumentsFormatter(),
            structlog.processors.StackInfoRenderer(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        # Not cached: a logger used before configure() must not keep the old settings.
        cache_logger_on_first_use=False,
    )


def set_level(level: str) -> None:
    """Change the lowest level logged (case-insensitive), keeping the output as
    :func:`configure` set it; the libraries follow as :func:`configure` says."""
    level_name = level.upper()
    if level_name not in LEVELS:
        raise ValueError(f"unknown log level {level!r}; expected one of {', '.join(LEVELS)}")
    _apply_level(level_name)


def _apply_level(level_name: str) -> None:
    logging.getLogger().setLevel(level_name)
    for name in _NOISY_LOGGERS:
        logging.getLogger(name).setLevel(logging.NOTSET if level_name == "DEBUG" else "WARNING")


def get_logger(name: str | None = None) -> structlog.stdlib.BoundLogger:
    """A logger named ``name`` (default: the calling module); usable before configure().

    A named logger imports structlog when it is first used, not when it is made (modules
    make theirs on import, and a command that logs nothing need not load structlog)."""
    if name is None:
        import structlog

        return structlog.stdlib.get_logger()
    return cast("structlog.stdlib.BoundLogger", _LazyLogger(name))


#: The level of each logging method that structlog's ``filter_by_level`` may drop.
_METHOD_LEVELS: Final = {"debug": logging.DEBUG, "info": logging.INFO}


def _dropped(*args: object, **kwargs: object) -> None:
    """A line below the level: what structlog's logger does with it, at once."""


class _LazyLogger:
    """Stands for ``structlog.stdlib.get_logger(name)``, made on first use: every attribute
    is that logger's. It keeps none of structlog's settings, so a logger used before
    :func:`configure` follows the configuration made later, as structlog's own does.

    A debug or info line that structlog's first processor, ``filter_by_level`` (as
    :func:`configure` sets it), would drop for the standard logger of that name is
    dropped here, without making structlog's logger for it (which costs more than a
    few lines of the daemon's work). Any other configuration (``capture_logs``, say)
    sees every line, as before."""

    def __init__(self, name: str) -> None:
        self._lazy_name = name
        self._lazy_logger: object = None
        self._lazy_stdlib = logging.getLogger(name)

    def __getattr__(self, attribute: str) -> Any:
        if attribute.startswith("_lazy_"):  # not set: a copy made without __init__
            raise AttributeError(attribute)
        level = _METHOD_LEVELS.get(attribute)
        if level is not None and not self._lazy_stdlib.isEnabledFor(level) and _filtering():
            return _dropped
        return getattr(self._lazy_resolved(), attribute)

    def __repr__(self) -> str:
        return repr(self._lazy_resolved())

    def _lazy_resolved(self) -> object:
        if self._lazy_logger is None:
            import structlog

            self._lazy_logger = structlog.stdlib.get_logger(self._lazy_name)
        return self._lazy_logger


def _filtering() -> bool:
    """Whether structlog, configured, drops lines by the standard library's levels first."""
    if "structlog" not in sys.modules:
        return False
    import structlog

    processors = structlog.get_config()["processors"]
    return bool(processors) and processors[0] is structlog.stdlib.filter_by_level


def bound(**ids: object) -> contextlib.AbstractContextManager[None]:
    """Add ``ids`` (request_id, operation_id, server_id, policy, message_id...) to every
    line logged in the current thread or task while the block runs; ``None`` values are
    skipped. On exit, whatever was bound before is back, so blocks nest."""
    return _Bound({key: value for key, value in ids.items() if value is not None})


class _Bound(contextlib.AbstractContextManager[None]):
    """What :func:`bound` returns (a class, not a generator: a decision enters one)."""

    __slots__ = ("_ids", "_tokens")

    def __init__(self, ids: dict[str, object]) -> None:
        self._ids = ids
        self._tokens: Mapping[str, Any] = {}

    def __enter__(self) -> None:
        import structlog

        self._tokens = structlog.contextvars.bind_contextvars(**self._ids)

    def __exit__(self, *_: object) -> None:
        import structlog

        structlog.contextvars.reset_contextvars(**self._tokens)
