"""Redis Pub/Sub brokers: classic (standalone or Sentinel) and Cluster."""

from realtime.brokers.redis.classic import RedisBroker
from realtime.brokers.redis.cluster import RedisClusterBroker

__all__ = ["RedisBroker", "RedisClusterBroker"]
