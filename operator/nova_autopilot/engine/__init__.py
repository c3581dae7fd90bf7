"""The decision flow: event -> wake waiters -> match -> guards -> journal -> runner.

The bus hands every event to :meth:`Engine.handle <.flow.Engine.handle>`; when
it returns, the event's decisions are in the journal and the bus may
acknowledge it. Imports inside the package only go down this table
(the import-linter contracts of ``make lint`` say so):

=========================  ===================================================
``flow``                   :class:`Engine`: intake, duplicates, planning, recording,
                           starting; outcomes; resuming after a restart
``takeover``               several daemons: who resumes a dead daemon's operations
``sweeps``                 level-triggered looks at Nova, handed to the engine as events
``approvals``              an operator's ``operation.approve`` / ``operation.reject``;
                           the authoriser's check of a request's key
``holds``                  operations held before they run (queued, awaiting
                           approval): recorded, tracked, released in turn, expired
``conduct``                the steps every decision shares: guard facts, the guards
                           again, breaker trials, claim and start, report, breakers
``facts``                  the guards' facts read from the journal; breakers kept
                           in step with outcomes (compare-and-set)
``locks``                  per-server locks, this daemon's and the group's
``tally``                  what was received, decided and finished, for metrics
=========================  ===================================================
"""
