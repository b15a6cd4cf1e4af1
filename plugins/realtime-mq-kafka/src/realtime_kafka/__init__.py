"""Apache Kafka broker for the realtime-mq gateway, registered as ``kafka``."""

from __future__ import annotations

from realtime_kafka.broker import KafkaBroker
from realtime_kafka.config import KafkaConfig

__all__ = ["KafkaBroker", "KafkaConfig"]
