"""The bounds docs/reliability.md promises, one constant each, asserted by the fault suite.

Seconds unless said otherwise. Each is the design bound plus room for this suite's machine (2
shared cores, several gateways and servers at once); the figures measured beside them are in
docs/reliability.md. A bound that needs work not merged yet is not here: the doc says so.
"""

from __future__ import annotations

# /readyz polled every 50 ms: a broker that says it is down is seen by the next poll.
RED_WHEN_BROKER_DOWN = 1.0

# The Redis subscriber's reconnect backoff: 0.1 s doubling to BACKOFF_CAP (5 s). After an
# outage longer than the cap, the next retry may be up to 5 s after Redis is back.
REDIS_BACKOFF_CAP = 5.0
GREEN_AFTER_REDIS_BACK = REDIS_BACKOFF_CAP + 1.5

# A cut subscriber connection (Redis fine) reconnects on the first retry (0.1 s).
GREEN_AFTER_SUBSCRIBER_CUT = 1.0

# Redis that answered again (SIGCONT, DEBUG SLEEP over): deliveries resume within this.
DELIVERING_AFTER_REDIS_ANSWERS = REDIS_BACKOFF_CAP + 2.0

# Presence after Redis lost its data: the next reaper tick (<= 1 s) re-asserts every entry.
PRESENCE_AFTER_DATA_LOSS = 2.5

# A killed gateway's members: PRESENCE_TTL_SECONDS + the reaper period (<= 1 s) + delivery.
PRESENCE_AFTER_GATEWAY_KILL_OVER_TTL = 2.0

# A publish is answered (200 or 503) within this even while Redis is frozen: redis-py's
# socket timeout (5 s) plus its retries.
ANSWER_WHILE_FROZEN = 12.0
