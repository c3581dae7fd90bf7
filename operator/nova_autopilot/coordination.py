"""Several daemons on one cloud: a group, its leader and named locks (tooz).

The only module that imports tooz. :class:`Coordinator` joins the group
``[coordination] group`` on the backend ``[coordination] backend_url``
(``redis://``, ``etcd3+http://``, ``zookeeper://``...), keeps the membership,
the locks it holds and its leadership alive from one heartbeat thread, and
gives named locks that several processes on several machines exclude each
other with. A daemon that stops heartbeating loses its membership, its locks
and its leadership after ``lock_timeout`` (on ZooKeeper: when its session
expires, after the URL's ``timeout``; docs/scaling.md).

The leader is the member that holds the group's lock ``leader``: every
heartbeat, a member that is not the leader tries to take it, and the leader
refreshes it; a leader whose refresh fails (it was away longer than the lock
timeout, another took over) is the leader no more.

With no backend (``backend_url`` empty, the default) the daemon is alone:
the locks are the process's own, it is always the leader, its group is itself.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
from collections.abc import Callable
from typing import Protocol
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from oslo_config import cfg

from nova_autopilot.errors import TemporaryError
from nova_autopilot.logs import get_logger

log = get_logger(__name__)

#: The name of the lock its holder leads the group with.
LEADER_LOCK = "leader"
#: On Redis, unless the URL says otherwise: seconds to connect, and to wait for an
#: answer. redis-py's and tooz's defaults (no connect timeout of its own, 30 s an
#: answer, each failed call tried again with growing pauses, under tooz's fifteen
#: tries) held a call for about a minute while Redis was down: long enough for
#: the main loop, stuck in the takeover's read of the members, to be taken for a
#: wedge.
REDIS_TIMEOUTS = {"socket_connect_timeout": "2", "socket_timeout": "5"}


class _LockLostFilter(logging.Filter):
    """tooz's Redis driver logs a release of a lock it no longer holds as an error with
    the lock's repr; :meth:`_ToozLock.release` says it once, as a warning, by name."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Unable to release lock")


_LOCK_LOST_FILTER = _LockLostFilter()


def _fail_fast(driver: object) -> None:
    """Let a call to Redis fail at its first failure: tooz tries a call that met a
    connection error fifteen times already, and redis-py's own tries under each of
    those (three, with pauses of up to 10 s) made a minute of a Redis that was down.
    The decision, the heartbeat or the takeover that made the call tries again at
    its own next turn."""
    client = getattr(driver, "_client", None)
    if client is None or not hasattr(client, "set_retry"):
        return
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    client.set_retry(Retry(NoBackoff(), 0))


def _join(driver: object, group: bytes) -> None:
    """Make the group, unless it exists, and join it, unless already a member."""
    from tooz import coordination

    with contextlib.suppress(coordination.GroupAlreadyExist):
        driver.create_group(group).get()  # type: ignore[attr-defined]
    with contextlib.suppress(coordination.MemberAlreadyExist):
        driver.join_group(group).get()  # type: ignore[attr-defined]


class CoordinationError(TemporaryError):
    """The coordination backend cannot be reached or refused a request."""


class Lock(Protocol):
    """A named lock: ``acquire(False)`` tries once, ``acquire(5.0)`` waits up to 5 s."""

    def acquire(self, blocking: bool | float = True) -> bool: ...
    def release(self) -> None: ...


def default_member_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


def backend_url(url: str, *, group: str, lock_timeout: int) -> str:
    """The URL handed to tooz: the lock and membership timeouts added (unless the URL
    sets them), and on Redis the group as the key namespace, so each group's keys
    stay apart."""
    parts = urlsplit(url)
    options = dict(parse_qsl(parts.query))
    options.setdefault("lock_timeout", str(lock_timeout))
    options.setdefault("membership_timeout", str(lock_timeout))
    if parts.scheme.startswith("redis"):
        options.setdefault("namespace", group)
        for name, value in REDIS_TIMEOUTS.items():
            options.setdefault(name, value)
    return urlunsplit(parts._replace(query=urlencode(options)))


class _LocalLock:
    """A lock of this process alone (no backend)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()

    def acquire(self, blocking: bool | float = True) -> bool:
        if isinstance(blocking, bool):
            return self._lock.acquire(blocking)
        return self._lock.acquire(timeout=max(0.0, float(blocking)))

    def release(self) -> None:
        self._lock.release()


class _ToozLock:
    """A lock of the group, refreshed by the coordinator's heartbeat while held."""

    def __init__(self, lock: object, errors: type[Exception], name: str = "") -> None:
        self._lock = lock
        self._errors = errors
        self.name = name

    def acquire(self, blocking: bool | float = True) -> bool:
        try:
            return bool(self._lock.acquire(blocking=blocking))  # type: ignore[attr-defined]
        except self._errors as exc:
            raise CoordinationError(f"cannot take a lock: {exc}") from exc

    def release(self) -> None:
        try:
            released = self._lock.release()  # type: ignore[attr-defined]
        except self._errors as exc:  # it expires on its own
            log.warning("coordination.release_failed", lock=self.name, error=str(exc))
            return
        if released is False:  # tooz says so, and logs it as an error of its own
            log.warning(
                "coordination.lock_lost",
                lock=self.name,
                error="the backend no longer held it for this daemon (it expired, or the "
                "backend lost it in a restart)",
            )

    def refresh(self) -> bool:
        """Keep holding it; False when it was lost meanwhile. Drivers whose locks
        expire (Redis, etcd) refresh them with ``heartbeat``; ZooKeeper's live as
        long as the session, which the driver's heartbeat keeps: there it only
        asks whether it still owns the lock."""
        try:
            heartbeat = getattr(self._lock, "heartbeat", None)
            if heartbeat is not None:
                return bool(heartbeat())
            still_owner = getattr(self._lock, "is_still_owner", None)
            return bool(still_owner()) if still_owner is not None else True
        except self._errors:
            return False


class Coordinator:
    """This daemon in its group: membership, leadership, locks."""

    def __init__(
        self,
        *,
        backend_url: str = "",
        member_id: str = "",
        group: str = "nova-autopilot",
        lock_timeout: int = 30,
        heartbeat_s: float = 5.0,
        on_leader: Callable[[bool], None] | None = None,
    ) -> None:
        """``on_leader`` is called (from the heartbeat thread) with True when this
        daemon becomes the leader and with False when it stops being it."""
        self.url = backend_url
        self.member_id = member_id or default_member_id()
        self.group = group
        self.lock_timeout = lock_timeout
        self.heartbeat_s = heartbeat_s
        self._on_leader = on_leader
        self._driver: object | None = None
        self._errors: type[Exception] = Exception
        self._leader_lock: _ToozLock | None = None
        self._leading = self.single
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._beat_lock = threading.Lock()
        self._local_locks: dict[str, _LocalLock] = {}
        self._problem: str | None = None

    @classmethod
    def from_conf(cls, conf: cfg.ConfigOpts) -> Coordinator:
        c = conf.coordination
        return cls(
            backend_url=str(c.backend_url).strip(),
            member_id=str(c.member_id).strip(),
            group=str(c.group),
            lock_timeout=int(c.lock_timeout),
            heartbeat_s=float(c.heartbeat_interval),
        )

    @property
    def single(self) -> bool:
        """No backend: this daemon alone."""
        return not self.url

    # -- life cycle -------------------------------------------------------

    def start(self) -> None:
        """Connect, join the group, take part in the election, start heartbeating."""
        if self.single:
            log.info("coordination.single", member_id=self.member_id)
            return
        from tooz import coordination

        # Every failure of a call to the backend is the backend's: tooz's drivers let
        # their client library's own errors through at times (redis-py's
        # ConnectionError from get_members while Redis is down, which ended the daemon).
        self._errors = Exception
        url = backend_url(self.url, group=self.group, lock_timeout=self.lock_timeout)
        group = self.group.encode()
        try:
            driver = coordination.get_coordinator(url, self.member_id.encode())
            driver.start(start_heart=False)
            _fail_fast(driver)
            logging.getLogger("tooz.drivers.redis").addFilter(_LOCK_LOST_FILTER)
            _join(driver, group)
        except self._errors as exc:
            raise CoordinationError(
                f"cannot join group {self.group} on the coordination backend "
                f"([coordination] backend_url): {exc}"
            ) from exc
        self._driver = driver
        self._leader_lock = self._tooz_lock(LEADER_LOCK)
        self._beat()
        self._thread = threading.Thread(
            target=self._heartbeats, name="autopilot-coordination", daemon=True
        )
        self._thread.start()
        log.info(
            "coordination.joined",
            member_id=self.member_id,
            group=self.group,
            leader=self._leading,
            members=sorted(self.members()),
        )

    def stop(self) -> None:
        """Leave the group and give back every lock (the others need not wait for
        them to expire)."""
        if self.single or self._driver is None:
            return
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.heartbeat_s + 5)
        driver, self._driver = self._driver, None
        self._set_leading(False)
        try:
            driver.leave_group(self.group.encode()).get()  # type: ignore[attr-defined]
        except self._errors as exc:
            log.warning("coordination.leave_failed", error=str(exc))
        try:
            driver.stop()  # type: ignore[attr-defined]
        except self._errors as exc:
            log.warning("coordination.stop_failed", error=str(exc))
        log.info("coordination.left", member_id=self.member_id, group=self.group)

    # -- what the others ask ----------------------------------------------

    def is_leader(self) -> bool:
        """Whether this daemon runs the group's periodic jobs now."""
        return self._leading

    def problem(self) -> str | None:
        """Why the backend is out of reach, as the last heartbeat found it (None when
        it took the heartbeat, or with no backend): what readiness reports, without
        asking the backend again."""
        return self._problem

    def members(self) -> frozenset[str]:
        """The members of the group now (those still heartbeating)."""
        if self.single or self._driver is None:
            return frozenset({self.member_id})
        try:
            found = self._driver.get_members(self.group.encode()).get()  # type: ignore[attr-defined]
        except self._errors as exc:
            raise CoordinationError(f"cannot list the group's members: {exc}") from exc
        return frozenset(m.decode() if isinstance(m, bytes) else str(m) for m in found)

    def lock(self, name: str) -> Lock:
        """The group's lock ``name`` (a new handle: one holder at a time across the
        group, not re-entrant)."""
        if self.single:
            return self._local_lock(name)
        return self._tooz_lock(name)

    def _tooz_lock(self, name: str) -> _ToozLock:
        if self._driver is None:
            raise CoordinationError("the coordinator is not started")
        full = f"{self.group}:{name}".encode()
        return _ToozLock(self._driver.get_lock(full), self._errors, name)  # type: ignore[attr-defined]

    def _local_lock(self, name: str) -> _LocalLock:
        with self._beat_lock:
            return self._local_locks.setdefault(name, _LocalLock())

    # -- heartbeat --------------------------------------------------------

    def _heartbeats(self) -> None:
        while not self._stop.wait(self.heartbeat_s):
            self._beat()

    def _beat(self) -> None:
        """Tell the group this daemon lives, refresh its locks, keep or seek leadership."""
        driver = self._driver
        if driver is None:
            return
        with self._beat_lock:
            try:
                driver.heartbeat()  # type: ignore[attr-defined]  # membership and held locks
                self._stay_member(driver)
            except self._errors as exc:
                log.warning("coordination.heartbeat_failed", error=str(exc))
                self._problem = f"the backend did not take the last heartbeat: {exc}"
                self._set_leading(False)
                return
            self._problem = None
            assert self._leader_lock is not None
            if self._leading:
                if not self._leader_lock.refresh():
                    self._leader_lock = self._tooz_lock(LEADER_LOCK)
                    self._set_leading(False)
                return
            try:
                self._set_leading(self._leader_lock.acquire(False))
            except CoordinationError as exc:
                log.warning("coordination.election_failed", error=str(exc))

    def _stay_member(self, driver: object) -> None:
        """Join the group again when the backend lost it (a Redis restarted empty keeps
        the heartbeats going, but neither the group nor its members)."""
        from tooz import coordination

        group = self.group.encode()
        try:
            found = driver.get_members(group).get()  # type: ignore[attr-defined]
        except (coordination.GroupNotCreated, coordination.MemberNotJoined):
            found = set()
        if self.member_id in found or self.member_id.encode() in found:
            return
        log.warning("coordination.rejoined", member_id=self.member_id, group=self.group)
        _join(driver, group)

    def _set_leading(self, leading: bool) -> None:
        if leading == self._leading:
            return
        self._leading = leading
        if leading:
            log.info("coordination.leader", member_id=self.member_id, group=self.group)
        else:
            log.warning("coordination.not_leader", member_id=self.member_id, group=self.group)
            if self._leader_lock is not None and self._driver is not None:
                self._leader_lock.release()
                self._leader_lock = self._tooz_lock(LEADER_LOCK)
        if self._on_leader is not None:
            self._on_leader(leading)
