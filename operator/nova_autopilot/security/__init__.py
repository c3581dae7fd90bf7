"""Who may ask the daemon for what, and what became of those who may not.

=========================  ===================================================
``signing``                HMAC-SHA256 signatures of operator requests; the keys file
``authorization``          which key may ask for which request types, actions, flavors
                           and projects (checked against Nova's own view of the server)
``refusals``               every request the bus dead-letters, recorded in the journal
=========================  ===================================================

``docs/security.md`` is the operator's page.
"""
