"""nova-autopilot: confirmed, event-driven operations on OpenStack Nova."""

__version__ = "0.1.0"
