"""Benchmarks of nova-autopilot. Run them all with ``python -m bench`` (or ``make bench``).

They measure and report; they never pass or fail on time.
"""
