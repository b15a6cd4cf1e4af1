"""Operator commands: ``realtime check``, ``realtime publish``, ``realtime listen``
(docs/server-api.md, "CLI")."""
