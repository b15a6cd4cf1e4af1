"""The one topic every instance writes and reads: found, or created with our settings."""

from __future__ import annotations

import asyncio
import logging

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import for_code

from realtime.errors import BrokerError
from realtime_kafka.config import KafkaConfig

log = logging.getLogger("realtime.broker.kafka")
TOPIC_ALREADY_EXISTS = 36
# Replicas of a topic we create when the setting says "auto": one per broker, at most this.
MAX_AUTO_REPLICAS = 3


async def ensure_topic(config: KafkaConfig) -> set[int]:
    """Create the topic when missing (if allowed) and return its partition ids.

    Bounded by twice the configured timeout; a Kafka that cannot be reached, or a topic that
    cannot be found or created, raises (KafkaError, OSError or BrokerError).
    """
    admin = AIOKafkaAdminClient(**config.client_options())
    try:
        async with asyncio.timeout(config.timeout * 2):
            await admin.start()
            partitions = await _describe(admin, config.topic)
            if partitions is None and config.create_topic:
                await _create(admin, config)
            while partitions is None:
                await asyncio.sleep(0.1)  # metadata catches up with the creation
                partitions = await _describe(admin, config.topic)
    except TimeoutError:
        what = "create or find" if config.create_topic else "find"
        raise BrokerError(f"could not {what} kafka topic {config.topic!r}") from None
    finally:
        try:
            async with asyncio.timeout(config.timeout):
                await admin.close()
        except Exception as exc:  # TimeoutError included
            log.debug("kafka admin client close: %r", exc)
    return partitions


async def _describe(admin: AIOKafkaAdminClient, name: str) -> set[int] | None:
    # Asking for one topic by name would auto-create it with the broker's defaults (where
    # auto.create.topics.enable is on: one partition, a 1 MiB limit), so look in the list of
    # all topics first.
    if name not in await admin.list_topics():
        return None
    for topic in await admin.describe_topics([name]):
        if topic["topic"] == name and topic["error_code"] == 0:
            found = {p["partition"] for p in topic["partitions"]}
            return found or None
    return None


async def _create(admin: AIOKafkaAdminClient, config: KafkaConfig) -> None:
    replicas = config.replication_factor
    if replicas is None:
        brokers = (await admin.describe_cluster())["brokers"]
        replicas = max(1, min(MAX_AUTO_REPLICAS, len(brokers)))
    new = NewTopic(
        config.topic,
        config.partitions,
        replicas,
        topic_configs={
            "max.message.bytes": str(config.max_message_bytes),
            "retention.ms": str(config.retention_ms),
        },
    )
    response = await admin.create_topics([new])
    for name, code, *rest in response.topic_errors:
        if code not in (0, TOPIC_ALREADY_EXISTS):
            detail = rest[0] if rest and rest[0] else for_code(code).__name__
            raise BrokerError(f"kafka could not create topic {name!r}: {detail}")
        if code == 0:
            log.info(
                "created kafka topic %s: %d partitions, %d replicas",
                name,
                config.partitions,
                replicas,
            )
