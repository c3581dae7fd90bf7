"""A real Nova on one machine, for end-to-end tests and for trying the daemon by hand.

The box runs Nova and Placement, pinned and installed from PyPI into their own
virtual environment, as real processes: the compute API and the placement API
under gunicorn, nova-conductor, nova-scheduler and nova-compute with a
fault-injecting fake virt driver. They talk over the machine's RabbitMQ, in a
vhost of their own, and keep their data in fresh databases of their own. There
is no Keystone, Glance or Neutron: a small auth middleware and Nova's own test
stand-ins take their place.

Modules that run on the test side (standard library only, unless noted):

- ``settings``       where things live and which services to use (environment variables)
- ``errors``         the harness's exceptions
- ``venv``           the pinned Nova/Placement virtual environment
- ``runs``           run identity, run directories and their state files
- ``databases``      MariaDB, PostgreSQL or SQLite databases for one run
- ``broker``         the run's RabbitMQ vhost (through rabbitmqctl)
- ``config``         nova.conf, placement.conf and api-paste.ini for one run
- ``processes``      starting and stopping service process groups
- ``services``       the five services: command lines, environment, readiness
- ``probes``         HTTP probes of the APIs
- ``waiting``        waiting on a condition with a deadline
- ``box``            the whole box: start, readiness, stop, leftovers
- ``stale``          cleaning up after runs whose owner died
- ``faults``         the per-server fault vocabulary (shared with the driver)
- ``notifications``  versioned notifications read from RabbitMQ (kombu)
- ``client``         ``NovaBox``, the object tests use (openstacksdk)
- ``cli``            ``scripts/novabox up|down|status|env``

Modules that run inside the Nova processes (they import Nova):

- ``bootstrap``      entry points for the services and the WSGI apps
- ``standins``       Glance and Neutron stand-ins from Nova's own test fixtures
- ``faultdriver``    the fault-injecting virt driver
- ``authmiddleware`` turns ``X-Auth-Token: user:project`` into identity headers
- ``sqlite``         the SQLite locking work-around (only when SQLite is used)

This package deliberately imports nothing here, so that the Nova processes
can import their modules without pulling in the test-side ones.
"""
