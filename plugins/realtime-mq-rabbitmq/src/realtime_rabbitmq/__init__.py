"""RabbitMQ broker plugin for realtime-mq, registered as ``rabbitmq`` in ``realtime.brokers``."""

from __future__ import annotations

from realtime_rabbitmq.broker import RabbitMQBroker
from realtime_rabbitmq.options import RabbitMQOptions

__all__ = ["RabbitMQBroker", "RabbitMQOptions"]
