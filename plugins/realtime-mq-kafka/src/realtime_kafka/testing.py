"""A real Kafka for integration tests: this plugin's own launcher.

Built on :mod:`realtime.testing.services` and resolved the same way: ``KAFKA_BOOTSTRAP_SERVERS``
if set (then it cannot be restarted), else a container when a Docker engine answers, else a
single KRaft node run natively from the jars scripts/install-services fetches.
"""

from __future__ import annotations

import asyncio
import base64
import os
import time
import uuid
from pathlib import Path

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from realtime.testing.services import (
    LOCALHOST,
    START_TIMEOUT,
    Container,
    Origin,
    Process,
    RestartUnsupported,
    Service,
    ServiceError,
    backend,
    cache_dir,
    parse_hostport,
    run_sync,
    which,
)
from realtime.testing.waiting import free_port, port_open

KAFKA_IMAGE = "apache/kafka:4.1.0"


def kafka_libs_dir() -> Path:
    """Where scripts/install-services puts the Kafka broker jars."""
    return cache_dir() / "kafka-libs"


async def _produce_once(bootstrap: str, request_timeout: float) -> bool:
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        request_timeout_ms=int(request_timeout * 1000),
        acks="all",
    )
    try:
        await producer.start()  # a metadata request
        # An acknowledged write: the controller is up and elected a partition leader.
        async with asyncio.timeout(request_timeout):
            await producer.send_and_wait("__realtime_ready", b"ping")
        return True
    finally:
        await producer.stop()


def kafka_ready(bootstrap: str, timeout: float = 10.0) -> bool:
    """A metadata request and an acknowledged produce both succeed."""
    return run_sync(lambda: _produce_once(bootstrap, timeout), timeout + 5)


def _settings(port: int) -> dict[str, str]:
    return {
        "process.roles": "broker,controller",
        "node.id": "1",
        "controller.listener.names": "CONTROLLER",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "inter.broker.listener.name": "PLAINTEXT",
        "advertised.listeners": f"PLAINTEXT://{LOCALHOST}:{port}",
        "num.partitions": "1",
        "offsets.topic.replication.factor": "1",
        "offsets.topic.num.partitions": "1",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1",
        # Consumers in tests join alone; the default 3 s delay only slows them down.
        "group.initial.rebalance.delay.ms": "0",
        "auto.create.topics.enable": "true",
    }


def _container(port: int) -> Container:
    # The container listens on the same port number as the host, so the advertised
    # address is right on both sides of the port mapping.
    settings = _settings(port)
    env = {"KAFKA_" + key.upper().replace(".", "_"): value for key, value in settings.items()}
    env["KAFKA_LISTENERS"] = f"PLAINTEXT://0.0.0.0:{port},CONTROLLER://localhost:9093"
    env["KAFKA_CONTROLLER_QUORUM_VOTERS"] = "1@localhost:9093"
    return Container(KAFKA_IMAGE, ports={port: port}, env=env)


def _cluster_id() -> str:
    # Kafka's Uuid text form: 16 random bytes, base64url without padding.
    return base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()


_LOG4J = (
    "rootLogger.level=INFO\n"
    "rootLogger.appenderRef.stdout.ref=STDOUT\n"
    "appender.stdout.type=Console\n"
    "appender.stdout.name=STDOUT\n"
    "appender.stdout.layout.type=PatternLayout\n"
    "appender.stdout.layout.pattern=[%d] %p %m (%c)%n\n"
    # The request log and the state-change log are too chatty for a test log.
    "logger.state.name=state.change.logger\n"
    "logger.state.level=WARN\n"
)


class KafkaServer(Service):
    """A single-node Kafka 4 (KRaft): ``.bootstrap`` ("127.0.0.1:PORT"), ``.host``, ``.port``."""

    name = "kafka"
    not_ready = (OSError, TimeoutError, KafkaError)

    def __init__(self, kind: Origin, bootstrap: str, *, container: Container | None = None) -> None:
        super().__init__(kind, container=container)
        self.bootstrap = bootstrap
        self.host, self.port = parse_hostport(bootstrap.split(",")[0], 9092)
        # Native only: formats the log dir once, before the first start.
        self._format: Process | None = None

    def _prepare_native(self) -> None:
        libs = kafka_libs_dir()
        if not any(libs.glob("kafka_2.13-*.jar")):
            raise ServiceError(f"no Kafka jars in {libs}; run scripts/install-services kafka")
        java = which("java", "install a Java 17+ runtime")
        controller = free_port()
        tmp = self.tmp
        settings = _settings(self.port) | {
            "listeners": (
                f"PLAINTEXT://{LOCALHOST}:{self.port},CONTROLLER://{LOCALHOST}:{controller}"
            ),
            "controller.quorum.voters": f"1@{LOCALHOST}:{controller}",
            "log.dirs": str(tmp / "data"),
        }
        props = tmp / "server.properties"
        props.write_text("".join(f"{key}={value}\n" for key, value in settings.items()))
        log4j = tmp / "log4j2.properties"
        log4j.write_text(_LOG4J)
        jvm = [
            java,
            "-Xms128m",
            "-Xmx512m",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={log4j}",
            "-cp",
            f"{libs}/*",
        ]
        format_argv = [
            *jvm,
            "kafka.tools.StorageTool",
            "format",
            f"--cluster-id={_cluster_id()}",
            "-c",
        ]
        self._format = Process([*format_argv, str(props)], tmp / "format.log", cwd=tmp)
        self.add_process(Process([*jvm, "kafka.Kafka", str(props)], tmp / "kafka.log", cwd=tmp))

    def _start_native(self) -> None:
        if self._format is not None:
            self._format.start()
            if not self._format.wait(START_TIMEOUT) or self._format.returncode() != 0:
                self._format.stop()
                raise self._format.failure("kafka StorageTool format failed")
            self._format = None  # formatted: a restart keeps the log dir
        super()._start_native()

    def _wait_ready(self, deadline: float) -> None:
        def ready() -> bool:
            if not port_open(self.host, self.port):
                return False
            return kafka_ready(
                self.bootstrap, timeout=max(1.0, min(10.0, deadline - time.monotonic()))
            )

        self.wait_for(ready, deadline, "kafka accepting an acknowledged produce")


def kafka_server() -> KafkaServer:
    """A running single-node Kafka 4 (KRaft): ``.bootstrap`` ("127.0.0.1:PORT"), ``.stop()``,
    ``.start()``, ``.restart()``. A restart keeps the ports and the log dir (data kept)."""
    given = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if given:
        return KafkaServer("env", given)
    port = free_port()
    bootstrap = f"{LOCALHOST}:{port}"
    if backend() == "docker":
        return KafkaServer("docker", bootstrap, container=_container(port)).launch()
    return KafkaServer("native", bootstrap).launch()


__all__ = ["KafkaServer", "RestartUnsupported", "kafka_libs_dir", "kafka_ready", "kafka_server"]
