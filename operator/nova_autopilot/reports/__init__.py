"""What the operator reads: the journal's history and the daemon's status, as text or JSON.

=========================  ===================================================
``history``                each operation's chain: event, policy, decision, steps with
                           their Nova calls, outcome (``nova-autopilot history``)
``status``                 the running daemon's ``/status``, or the journal's
                           unfinished operations when it is silent
``table``                  the one renderer of aligned text tables
=========================  ===================================================
"""
