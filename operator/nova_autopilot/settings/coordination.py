"""[coordination]: several daemons sharing one cloud through a tooz backend
(docs/scaling.md): group membership, locks, journal leases and the takeover of
the operations of a daemon that left."""

from __future__ import annotations

from oslo_config import cfg

from nova_autopilot.settings.kinds import Group, seconds


def coordination() -> Group:
    """The backend, this daemon's name, the group, and the timing of locks and takeovers."""
    return cfg.OptGroup("coordination", title="Several daemons on one cloud (tooz)"), [
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
        seconds(
            "lock_timeout",
            30,
            "Seconds a daemon that stopped heartbeating keeps its locks, its group "
            "membership and its journal leases: how long its operations wait before a "
            "survivor takes them over.",
            minimum=2,
        ),
        seconds(
            "heartbeat_interval",
            5,
            "Seconds between two heartbeats (membership, locks, leader, journal leases); "
            "keep it well below lock_timeout.",
        ),
        seconds(
            "lock_wait",
            10,
            "Seconds a decision waits for its server's lock, held by another daemon that "
            "is deciding on that server, before the message is tried again later.",
        ),
        seconds(
            "takeover_interval",
            10,
            "Seconds between two looks for the unfinished operations of daemons that "
            "left the group, which this daemon then claims and resumes.",
        ),
    ]
