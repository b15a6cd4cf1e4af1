"""The core: local subscriptions (hub), publish and deliver (node), each subscriber's presence
order (presence), and the presence refresh / reap / re-assert loops (upkeep)."""
