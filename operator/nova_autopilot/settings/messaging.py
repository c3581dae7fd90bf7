"""The messages the daemon takes in: Nova's notifications ([notifications],
through oslo.messaging), operator requests ([requests], through kombu, signed
and authorised), and the limits every incoming message meets ([intake]).

The broker of the notifications is oslo.messaging's own ``transport_url``,
declared by oslo.messaging, not here."""

from __future__ import annotations

from oslo_config import cfg, types

from nova_autopilot.settings.kinds import AMQP_NAME, Group, seconds


def notifications() -> Group:
    """Where Nova's notifications are consumed, and how failures are retried."""
    return cfg.OptGroup("notifications", title="Nova notifications (oslo.messaging)"), [
        cfg.StrOpt(
            "exchange",
            default="nova",
            regex=AMQP_NAME,
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
            regex=AMQP_NAME,
            help="Listener pool name. The daemon consumes from its own pool queue, so "
            "it receives a copy of every notification and never takes messages away "
            "from other consumers of the same topics. Cannot be empty.",
        ),
        cfg.BoolOpt(
            "pool_durable",
            default=True,
            help="Declare the pool queue durable, whatever [oslo_messaging_rabbit] "
            "amqp_durable_queues says (its default, false, is oslo.messaging's for "
            "Nova's own transient queues; Nova's exchange is still bound as Nova declares "
            "it): the notifications waiting in the pool queue then outlive a broker "
            "restart. false: the pool queue follows amqp_durable_queues, and a broker "
            "restart loses what waits in it when that is false. Quorum queues are "
            "durable either way. A pool queue that exists already with the other "
            "durability must be deleted before the daemon can declare it.",
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
            regex=AMQP_NAME,
            help="Queue receiving notifications that could not be processed "
            "(malformed, oversized, or still failing after all retry_delays).",
        ),
    ]


def requests() -> Group:
    """Where operator requests arrive and their outcomes go; how they are signed and authorised."""
    return cfg.OptGroup("requests", title="Operator requests (kombu)"), [
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
            regex=AMQP_NAME,
            help="Exchange to which operators publish requests.",
        ),
        cfg.StrOpt(
            "queue",
            default="nova-autopilot.requests",
            regex=AMQP_NAME,
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
            regex=AMQP_NAME,
            help="Exchange on which the outcome of each request is published.",
        ),
        cfg.StrOpt(
            "dead_letter_exchange",
            default="nova-autopilot.dead",
            regex=AMQP_NAME,
            help="Exchange receiving requests that were rejected (unsigned, badly "
            "signed, expired, malformed or oversized).",
        ),
        cfg.StrOpt(
            "signing_keys_file",
            default="/etc/nova-autopilot/signing-keys.yaml",
            help="YAML file with the keys that requests must be signed with. Keep it "
            "readable only by the service user.",
        ),
        seconds(
            "max_age",
            300,
            "Seconds after its creation time during which a request is accepted; "
            "older requests are rejected as expired.",
        ),
        seconds(
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


def intake() -> Group:
    """Size and depth limits of every incoming message; beyond them it is dead-lettered."""
    return cfg.OptGroup("intake", title="Limits on incoming messages"), [
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
