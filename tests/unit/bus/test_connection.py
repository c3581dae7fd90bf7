"""Where the brokers are: read from oslo.messaging's options exactly as Nova reads them."""

from __future__ import annotations

import random
import ssl
from pathlib import Path

import amqp
import pytest

from nova_autopilot import settings
from nova_autopilot.bus.connection import (
    DEFAULT_NOTIFICATION_PREFETCH,
    Backoff,
    BrokerUnavailable,
    broker_error,
    notification_broker,
    request_broker,
)
from nova_autopilot.settings import SettingsError
from tests.unit.bus.support import conf_with


def test_a_transport_url_with_several_hosts_becomes_kombu_failover_urls() -> None:
    conf = conf_with(
        DEFAULT={"transport_url": "rabbit://nova:s3cret@rabbit1:5672,nova:s3cret@rabbit2:5673/nova"}
    )

    broker = notification_broker(conf)

    assert broker.urls == (
        "amqp://nova:s3cret@rabbit1:5672/nova",
        "amqp://nova:s3cret@rabbit2:5673/nova",
    )
    assert not broker.in_memory


def test_the_notification_transport_url_wins_over_the_default_one() -> None:
    conf = conf_with(
        DEFAULT={"transport_url": "rabbit://rpc:a@rpc-host:5672/"},
        oslo_messaging_notifications={"transport_url": "rabbit://notif:b@notif-host:5672/n"},
    )

    assert notification_broker(conf).urls == ("amqp://notif:b@notif-host:5672/n",)


def test_credentials_with_reserved_characters_survive_the_translation() -> None:
    conf = conf_with(DEFAULT={"transport_url": "rabbit://us%40er:p%40ss%2Fw@host:5672/v%2Fh"})

    assert notification_broker(conf).urls == ("amqp://us%40er:p%40ss%2Fw@host:5672/v%2Fh",)


def test_no_transport_url_means_the_local_broker_as_for_oslo_messaging() -> None:
    assert notification_broker(conf_with()).urls == ("amqp://guest:guest@localhost:5672/",)


def test_the_display_form_and_the_repr_never_show_the_password() -> None:
    conf = conf_with(DEFAULT={"transport_url": "rabbit://nova:s3cret@rabbit1:5672/nova"})

    broker = notification_broker(conf)

    assert "s3cret" not in broker.display
    assert "s3cret" not in repr(broker)
    assert broker.display == "amqp://nova@rabbit1:5672/nova"


def test_options_in_the_url_query_override_oslo_messaging_rabbit() -> None:
    conf = conf_with(
        DEFAULT={"transport_url": "rabbit://u:p@h:5672/?heartbeat_timeout_threshold=10"},
        oslo_messaging_rabbit={"heartbeat_timeout_threshold": 60, "heartbeat_rate": 2},
    )

    broker = notification_broker(conf)

    assert broker.heartbeat == 10
    assert broker.heartbeat_rate == 2
    assert broker.poll_interval == pytest.approx(0.25)


def test_an_unknown_option_in_the_url_query_is_refused_with_its_name() -> None:
    conf = conf_with(DEFAULT={"transport_url": "rabbit://u:p@h:5672/?heartbeat_rat=2"})

    with pytest.raises(SettingsError, match="heartbeat_rat"):
        notification_broker(conf)


def test_tls_is_configured_as_oslo_messaging_configures_it() -> None:
    conf = conf_with(
        DEFAULT={"transport_url": "rabbit://u:p@rabbit.example.org:5671/"},
        oslo_messaging_rabbit={
            "ssl": True,
            "ssl_ca_file": "/etc/ssl/ca.pem",
            "ssl_cert_file": "/etc/ssl/client.pem",
            "ssl_key_file": "/etc/ssl/client.key",
        },
    )

    tls = notification_broker(conf).ssl

    assert tls == {
        "ca_certs": "/etc/ssl/ca.pem",
        "cert_reqs": ssl.CERT_REQUIRED,
        "server_hostname": "rabbit.example.org",
        "certfile": "/etc/ssl/client.pem",
        "keyfile": "/etc/ssl/client.key",
    }


def test_tls_without_files_still_encrypts() -> None:
    conf = conf_with(
        DEFAULT={"transport_url": "rabbit://u:p@h:5671/"}, oslo_messaging_rabbit={"ssl": True}
    )

    assert notification_broker(conf).ssl is True


def test_durable_queues_follow_amqp_durable_queues() -> None:
    assert not notification_broker(conf_with()).durable
    durable = conf_with(oslo_messaging_rabbit={"amqp_durable_queues": True})
    assert notification_broker(durable).durable


def test_quorum_queues_make_the_pool_queue_quorum_and_durable() -> None:
    conf = conf_with(
        oslo_messaging_rabbit={"rabbit_quorum_queue": True, "rabbit_quorum_delivery_limit": 5}
    )

    broker = notification_broker(conf)

    assert broker.durable
    assert broker.queue_arguments == {"x-queue-type": "quorum", "x-delivery-limit": 5}
    assert broker.own_queue_arguments == {"x-queue-type": "quorum"}


def test_quorum_and_ha_queues_together_are_refused() -> None:
    conf = conf_with(oslo_messaging_rabbit={"rabbit_quorum_queue": True, "rabbit_ha_queues": True})

    with pytest.raises(SettingsError, match="rabbit_ha_queues"):
        notification_broker(conf)


def test_the_prefetch_is_bounded_even_when_oslo_messaging_says_unlimited() -> None:
    assert notification_broker(conf_with()).prefetch == DEFAULT_NOTIFICATION_PREFETCH
    bounded = conf_with(oslo_messaging_rabbit={"rabbit_qos_prefetch_count": 40})
    assert notification_broker(bounded).prefetch == 40


@pytest.mark.parametrize("url", ["memory://", "kombu+memory:////"])
def test_an_in_memory_url_selects_the_in_process_broker(url: str) -> None:
    conf = conf_with(DEFAULT={"transport_url": url})

    assert notification_broker(conf).in_memory
    assert request_broker(conf).in_memory


def test_oslo_messagings_fake_driver_is_refused_since_nothing_there_reaches_the_bus() -> None:
    conf = conf_with(DEFAULT={"transport_url": "fake://"})

    with pytest.raises(SettingsError, match=r"kombu\+memory:////"):
        notification_broker(conf)


def test_requests_use_the_notification_broker_unless_they_have_their_own() -> None:
    shared = conf_with(DEFAULT={"transport_url": "rabbit://u:p@nova-rabbit:5672/nova"})
    assert request_broker(shared).urls == ("amqp://u:p@nova-rabbit:5672/nova",)
    assert request_broker(shared).prefetch == 16

    own = conf_with(
        DEFAULT={"transport_url": "rabbit://u:p@nova-rabbit:5672/nova"},
        requests={"broker_url": "amqps://ops:q@ops-rabbit:5671/ops", "prefetch": 4},
    )
    broker = request_broker(own)
    assert broker.urls == ("amqps://ops:q@ops-rabbit:5671/ops",)
    assert broker.ssl is True
    assert broker.prefetch == 4
    assert "q@" not in broker.display


def test_a_nova_style_configuration_file_is_read_as_is(tmp_path: Path) -> None:
    path = tmp_path / "nova-autopilot.conf"
    path.write_text(
        "[DEFAULT]\n"
        "transport_url = rabbit://nova:pw@rabbit:5672/\n"
        "[oslo_messaging_notifications]\n"
        "transport_url = rabbit://notify:pw@rabbit-n:5672/notifications\n"
        "[oslo_messaging_rabbit]\n"
        "amqp_durable_queues = true\n"
        "heartbeat_timeout_threshold = 20\n"
        "rabbit_retry_interval = 2\n"
        "[notifications]\n"
        "pool = autopilot\n"
    )
    conf = settings.load(config_files=[str(path)])

    broker = notification_broker(conf)

    assert broker.urls == ("amqp://notify:pw@rabbit-n:5672/notifications",)
    assert broker.durable
    assert broker.heartbeat == 20
    assert broker.retry_interval == 2


def test_backoff_grows_by_its_step_up_to_its_maximum_with_jitter() -> None:
    backoff = Backoff(interval=1, step=2, maximum=4, rng=random.Random(7))

    delays = [backoff.next_delay() for _ in range(5)]

    for delay, ceiling in zip(delays, [1, 3, 4, 4, 4], strict=True):
        assert ceiling / 2 <= delay <= ceiling
    assert backoff.failures == 5
    backoff.reset()
    assert backoff.next_delay() <= 1


@pytest.mark.parametrize(
    ("options", "option", "says"),
    [
        ({"DEFAULT": {"transport_url": "garbage://ops:s3cret@host/"}}, "[DEFAULT] transport_url",
         "unknown scheme 'garbage', the scheme must be one of rabbit, amqp"),
        ({"DEFAULT": {"transport_url": "ops:s3cret@host"}}, "[DEFAULT] transport_url",
         "it does not start with a scheme and ://"),
        ({"oslo_messaging_notifications": {"transport_url": "rabbit://ops:s3cret@host:99999/"}},
         "[oslo_messaging_notifications] transport_url", "port 99999 is not in 1-65535"),
        ({"DEFAULT": {"transport_url": "rabbit://ops:s3cret@a:5672,ops:s3cret@b:70000/"}},
         "[DEFAULT] transport_url", "port 70000 is not in 1-65535"),
        ({"DEFAULT": {"transport_url": "rabbit://ops:s3cret@host:0/"}}, "[DEFAULT] transport_url",
         "port 0 is not in 1-65535"),
        ({"DEFAULT": {"transport_url": "rabbit://ops:s3cret/"}}, "[DEFAULT] transport_url",
         "a port is not a number from 1 to 65535"),
        ({"DEFAULT": {"transport_url": "rabbit://ops:s3cret@[::1/"}}, "[DEFAULT] transport_url",
         "an IPv6 address without its closing ]"),
        ({"DEFAULT": {"transport_url": "rabbit://h/?heartbeat_rate=s3cret"}},
         "[DEFAULT] transport_url", "invalid value for 'heartbeat_rate' in the query"),
        ({"oslo_messaging_notifications": {"transport_url": "fake://"}},
         "[oslo_messaging_notifications] transport_url", "oslo.messaging's test driver"),
    ],
)  # fmt: skip
def test_a_broker_url_no_connection_could_be_made_from_names_its_option(
    options: dict[str, dict[str, object]], option: str, says: str
) -> None:
    conf = conf_with(**options)
    for broker in (notification_broker, request_broker):  # requests fall back on it
        with pytest.raises(SettingsError) as raised:
            broker(conf)
        message = str(raised.value)
        assert message.startswith(f"{option}: ")
        assert says in message
        assert "s3cret" not in message


@pytest.mark.parametrize(
    "url",
    ["garbage://ops:s3cret@host/", "amqp://ops:s3cret@host:99999/", "amqps://ops:s3cret@[::1/"],
)
def test_a_request_broker_url_that_is_not_one_is_said_of_its_own_option(url: str) -> None:
    conf = conf_with(requests={"broker_url": url})
    with pytest.raises(
        SettingsError, match=r"^\[requests\] broker_url: not a broker URL"
    ) as raised:
        request_broker(conf)
    assert "s3cret" not in str(raised.value)
    assert raised.value.option == "[requests] broker_url"
    notification_broker(conf)  # the notification broker is another


def test_a_consumer_the_broker_cancelled_is_said_so_not_named_by_its_tag() -> None:
    """py-amqp raises the broker's basic.cancel with the consumer's tag as its reply text."""
    settings_ = notification_broker(conf_with())
    cancelled = amqp.exceptions.ConsumerCancelled("None1", (60, 30))

    error = broker_error(settings_, cancelled)

    assert isinstance(error, BrokerUnavailable)
    assert str(error) == (
        f"broker {settings_.display} cancelled the consumer: its queue was deleted, or its "
        "vhost, or the queue's node went away"
    )
    assert "None1" not in str(error)


def test_a_declaration_the_broker_refuses_as_inequivalent_says_what_to_do() -> None:
    settings_ = notification_broker(conf_with())
    refused = amqp.exceptions.PreconditionFailed(
        "PRECONDITION_FAILED - inequivalent arg 'durable' for queue 'nova-autopilot' in "
        "vhost '/': received 'true' but current is 'false'",
        (50, 10),
    )

    error = broker_error(settings_, refused)

    assert str(error) == (
        f"broker {settings_.display} refused a declaration: PRECONDITION_FAILED - "
        "inequivalent arg 'durable' for queue 'nova-autopilot' in vhost '/': received "
        "'true' but current is 'false': it exists with other settings (delete it once "
        "drained, or match them: [notifications] pool_durable, [oslo_messaging_rabbit])"
    )
