"""Logging for the tests that configure it: nova_autopilot.logs.configure() changes
process-wide state (the root logger's handlers and level, the libraries' levels,
structlog's configuration), which the next test of the worker must not inherit."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

import structlog

#: The libraries whose loggers configure() sets a level on.
LIBRARIES = ("amqp", "kombu", "oslo_messaging", "oslo_config", "openstack", "keystoneauth")


@contextlib.contextmanager
def logging_restored() -> Iterator[None]:
    """Whatever the block configures, the logging of before it afterwards."""
    root = logging.getLogger()
    level = root.level
    library_levels = {name: logging.getLogger(name).level for name in LIBRARIES}
    try:
        yield
    finally:
        for handler in list(root.handlers):
            if isinstance(handler.formatter, structlog.stdlib.ProcessorFormatter):
                root.removeHandler(handler)
        root.setLevel(level)
        for name, library_level in library_levels.items():
            logging.getLogger(name).setLevel(library_level)
        structlog.reset_defaults()
        structlog.contextvars.clear_contextvars()
