"""A simulated Nova: the compute API over HTTP, Nova's state machine, its notifications.

For the embedded demo, the fast tests and the benchmarks. It is the server
side: it never imports openstacksdk; clients (the daemon, the tests) talk to
it over real HTTP. See docs/sandbox.md.
"""

from nova_autopilot.sandbox.cell import Settings
from nova_autopilot.sandbox.clock import Clock, ManualClock, SystemClock
from nova_autopilot.sandbox.durations import Durations
from nova_autopilot.sandbox.faults import HttpFault, ServerFaults
from nova_autopilot.sandbox.model import IMAGE_ID, Flavor, Server
from nova_autopilot.sandbox.outbox import Notification
from nova_autopilot.sandbox.quotas import Quotas
from nova_autopilot.sandbox.request_counts import WriteCall
from nova_autopilot.sandbox.sandbox import Sandbox

__all__ = [
    "IMAGE_ID",
    "Clock",
    "Durations",
    "Flavor",
    "HttpFault",
    "ManualClock",
    "Notification",
    "Quotas",
    "Sandbox",
    "Server",
    "ServerFaults",
    "Settings",
    "SystemClock",
    "WriteCall",
]
