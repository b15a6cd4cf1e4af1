"""Redis Pub/Sub brokers: classic (standalone or Sentinel) and Cluster.

``common`` holds what both share; ``factory`` picks one for the settings (the ``redis`` entry
point). Importing this package imports neither broker, so the presence store can use
``common.topic`` without the brokers.
"""
