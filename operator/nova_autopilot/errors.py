"""The error vocabulary of nova-autopilot.

Every error says what happens next:

* :class:`TemporaryError` - the same work may succeed later: retry with
  backoff and jitter (broker gone, Nova 5xx, time-out).
* :class:`PermanentError` - retrying cannot help: record it, report it and
  acknowledge the message (bad input, a refused operation, a policy mistake).
* :class:`SettingsError` - the configuration cannot be used: nothing starts with it
  (a command exits with status 2).

Only the engine catches broadly; everything below raises one of these.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

#: The exit status of a command stopped by Ctrl-C: 128 + SIGINT, as a shell reports it.
EXIT_INTERRUPTED: Final = 130


class AutopilotError(Exception):
    """Base of every error raised on purpose by nova-autopilot."""

    retryable: bool = False


class TemporaryError(AutopilotError):
    """The operation may succeed if retried later."""

    retryable = True


class PermanentError(AutopilotError):
    """Retrying cannot help: record, report, acknowledge."""


class SettingsError(ValueError):
    """The configuration cannot be used; the message names the file and option
    (and ``line``, the line of the file, when there is one). Raised by
    :mod:`nova_autopilot.settings`, which exports it; defined here so that a
    command can catch it without loading oslo.config."""

    def __init__(
        self,
        message: str,
        *,
        path: str | None = None,
        option: str | None = None,
        line: int | None = None,
    ):
        super().__init__(message)
        self.path = path
        self.option = option
        self.line = line


class BadMessage(PermanentError):
    """A message that cannot become an event. ``reason`` is short and stable
    (it travels in dead-letter headers); ``detail`` says exactly what is wrong."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class TemplateError(PermanentError):
    """A policy parameter could not be rendered for an event."""


@dataclass(frozen=True, slots=True)
class PolicyProblem:
    """One mistake in a policy file, located as precisely as possible."""

    file: str
    line: int | None
    policy: str | None
    field: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line is not None else self.file
        who = f" policy {self.policy!r}:" if self.policy else ""
        field = f" {self.field}:" if self.field else ""
        return f"{where}:{who}{field} {self.message}"


class PolicyError(PermanentError):
    """A policy set that cannot be used; carries every problem found at once."""

    def __init__(self, problems: Sequence[PolicyProblem]) -> None:
        self.problems = tuple(problems)
        count = len(self.problems)
        lines = "\n".join(str(p) for p in self.problems)
        super().__init__(f"{count} problem{'s' if count != 1 else ''} in policies:\n{lines}")


class CloudError(AutopilotError):
    """Base of the errors raised by ``cloud`` for Nova's answers.

    ``status`` is the HTTP status when there was one; ``message`` is Nova's
    own explanation (its ``badRequest``/``conflictingRequest`` message)."""

    def __init__(self, message: str, *, status: int | None = None, call: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.call = call


class CloudUnavailable(CloudError, TemporaryError):
    """Nova or the network failed (5xx, time-out, connection refused): retry later."""


class NotFound(CloudError, PermanentError):
    """404: the server or flavor is gone."""


class Conflict(CloudError, PermanentError):
    """409: the server is not in a state that allows the call."""


class QuotaExceeded(CloudError, PermanentError):
    """403 with Nova's "Quota exceeded": the project has no room for it."""


class Rejected(CloudError, PermanentError):
    """Another 4xx: Nova refuses the request as it stands."""


class Ambiguous(Rejected):
    """A name that several of Nova's servers share: only an id says which."""
