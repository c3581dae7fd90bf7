"""``nova-autopilot demo``: the real daemon through the product's flows.

=========================  ===================================================
``flows``                  the demo itself: each flow, followed step by step, then the
                           journal's history and the verdict
``staging``                how each flow's condition is brought about: the sandbox's
                           faults, or what a real cloud can honestly be made to do
``seed/``                  the demo's policies and event stream, and the product's
                           seed policies (``config/policies.yaml`` points here)
=========================  ===================================================
"""
