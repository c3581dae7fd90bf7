"""Who is asking: the request context the compute API acts for.

Like the novabox harness (and without Keystone), the token names the caller:
``X-Auth-Token: <user>:<project>``. The user ``admin`` is an administrator;
anyone else is a member of their project.
"""

from __future__ import annotations

from dataclasses import dataclass

from nova_autopilot.sandbox.model import new_request_id


@dataclass(frozen=True)
class RequestContext:
    user_id: str | None
    project_id: str | None
    is_admin: bool
    request_id: str

    @classmethod
    def from_token(cls, token: str, request_id: str | None = None) -> RequestContext | None:
        """The context of an ``X-Auth-Token`` header; None when it names nobody."""
        user, _, project = token.strip().partition(":")
        user, project = user.strip(), project.strip()
        if not user or not project:
            return None
        return cls(user, project, user == "admin", request_id or new_request_id())

    @classmethod
    def admin(cls, project_id: str = "admin") -> RequestContext:
        return cls("admin", project_id, True, new_request_id())

    @classmethod
    def periodic(cls) -> RequestContext:
        """A periodic task's context (Nova's admin context: no user, no project)."""
        return cls(None, None, True, new_request_id())

    def may_see(self, project_id: str) -> bool:
        return self.is_admin or self.project_id == project_id
