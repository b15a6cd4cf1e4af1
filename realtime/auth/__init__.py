"""Who a connection is (:mod:`.tokens`), what its token grants (:mod:`.grants`), and the
app backend's say on each channel action (:mod:`.hook`)."""

from __future__ import annotations

from realtime.auth.grants import Action, Grants, grants_from
from realtime.auth.tokens import Authenticator, Identity, token_from

__all__ = ["Action", "Authenticator", "Grants", "Identity", "grants_from", "token_from"]
