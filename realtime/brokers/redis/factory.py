"""The ``redis`` entry point: the classic or the cluster broker, as the deployment needs.

Neither broker class knows the other; this module is the one place that chooses.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from realtime.brokers.redis.classic import RedisBroker
from realtime.brokers.redis.cluster import RedisClusterBroker
from realtime.config import check_redis_url, redis_url_from_parts

if TYPE_CHECKING:
    from realtime.config import RedisDeployment, Settings


def for_deployment(deployment: RedisDeployment) -> RedisBroker | RedisClusterBroker:
    """The broker for a standalone, Sentinel or Cluster deployment."""
    if deployment.cluster:
        return RedisClusterBroker(deployment)
    return RedisBroker(deployment.url, deployment=deployment)


class RedisBrokers:
    """What ``realtime.brokers = redis`` names: the registry calls :meth:`from_settings`."""

    @staticmethod
    def from_settings(settings: Settings) -> RedisBroker | RedisClusterBroker:
        addr = settings.get("BROADCAST_MQ_ADDR")
        # Settings refuse BROADCAST_MQ_* beside Sentinel or Cluster: one deployment carries both.
        if addr is None or settings.redis.mode != "standalone":
            return for_deployment(settings.redis)
        if "://" in addr:
            return RedisBroker(check_redis_url("BROADCAST_MQ_ADDR", addr))
        password = settings.get("BROADCAST_MQ_PASSWORD")
        return RedisBroker(
            redis_url_from_parts("BROADCAST_MQ", addr, password, settings.get("BROADCAST_MQ_DB"))
        )
