"""The policy language: model, loading with located errors, matching, templating.

``docs/policies.md`` is the reference for policy authors.
"""

from nova_autopilot.policies.loader import load_policies, load_texts
from nova_autopilot.policies.matching import Explanation, Match, PolicySet
from nova_autopilot.policies.model import ACTIONS, Policy

__all__ = ["ACTIONS", "Explanation", "Match", "Policy", "PolicySet", "load_policies", "load_texts"]
