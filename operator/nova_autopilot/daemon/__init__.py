"""The daemon: what ``nova-autopilot run`` starts and how it shows itself.

=========================  ===================================================
``wiring``                 :class:`Daemon`: every part built from the configuration,
                           started in order; signals, the main loop, retention
``reload``                 SIGHUP: policies, signing keys, authorisation table and
                           log level read again and put in force together, or not at all
``endpoints``              ``/``, ``/metrics``, ``/healthz``, ``/readyz``, ``/status`` over HTTP
``page``                   the read-only status page at ``/``: plain HTML, no outside assets
``metrics``                Prometheus metrics (the only prometheus_client user)
``systemd``                READY=1, STATUS, WATCHDOG=1 only while alive; the notify protocol
``health``                 liveness (is it really working?), readiness, the status sections
=========================  ===================================================
"""
