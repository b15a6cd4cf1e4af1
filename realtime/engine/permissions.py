"""May this connection subscribe, publish or join presence on this channel?

In order: what the token grants is allowed; else the app's hook decides, when one is set;
else ``CHANNEL_POLICY``: ``open`` allows, ``token`` refuses. A refusal is a ``forbidden``
error frame and nothing else happens.
"""

from __future__ import annotations

from realtime.auth.grants import Action, Grants
from realtime.auth.hook import AuthHook, HookFailed
from realtime.errors import FrameError


class Permissions:
    def __init__(
        self, policy: str = "open", hook: AuthHook | None = None, fail_open: bool = False
    ) -> None:
        self.open = policy == "open"
        self.hook = hook
        self._fail_open = fail_open
        # Nothing to check: the node skips the call (the seed's behaviour costs nothing).
        self.enforcing = not self.open or hook is not None

    async def check(
        self, action: Action, channel: str, user_id: str, grants: Grants | None
    ) -> None:
        """Return when allowed; raise ``FrameError("forbidden")`` when not."""
        if grants is not None and grants.allows(action, channel):
            return
        if self.hook is not None:
            try:
                allowed = await self.hook.allows(action, channel, user_id)
            except HookFailed as exc:
                if self._fail_open:
                    return
                raise FrameError("forbidden", f"{exc}; refused", channel) from None
            if not allowed:
                raise FrameError("forbidden", f"not allowed to {action} on this channel", channel)
            return
        if not self.open:
            raise FrameError(
                "forbidden", f"your token does not grant {action} on this channel", channel
            )

    async def close(self) -> None:
        if self.hook is not None:
            await self.hook.close()
