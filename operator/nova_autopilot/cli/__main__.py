"""``python -m nova_autopilot.cli``: the ``nova-autopilot`` command."""

import sys

from nova_autopilot.cli import main

sys.exit(main())
