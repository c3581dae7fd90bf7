"""Actions: each one a resumable state machine over Nova's real state.

``registry.MACHINES`` names them; ``runner.Runner`` runs them.
"""
