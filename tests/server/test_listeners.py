"""realtime.server.listeners: holding new connections off a listening socket before it
closes, so none waiting in its accept queue is reset (real sockets on 127.0.0.1)."""

from __future__ import annotations

import asyncio
import socket
import sys
import threading
import time

import pytest

from realtime.server import listeners
from realtime.testing.waiting import wait_until

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux only")


def _listener() -> tuple[socket.socket, int]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    return sock, sock.getsockname()[1]


def _connects(port: int, timeout: float) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout):
            return True
    except OSError:
        return False


def test_finds_only_the_listening_sockets_on_the_given_ports() -> None:
    first, first_port = _listener()
    second, second_port = _listener()
    try:
        found = list(listeners.listening_sockets({first_port}))
        ports = [sock.getsockname()[1] for sock in found]
        for sock in found:
            sock.close()
        assert ports == [first_port]
        everything = list(listeners.listening_sockets())
        all_ports = {sock.getsockname()[1] for sock in everything}
        for sock in everything:
            sock.close()
        assert {first_port, second_port} <= all_ports
    finally:
        first.close()
        second.close()
    # The duplicates were closed, the originals too: nothing listens there any more.
    assert not _connects(first_port, 1.0)


def test_queue_length_counts_connections_not_yet_accepted() -> None:
    sock, port = _listener()
    clients = [socket.create_connection(("127.0.0.1", port), timeout=2) for _ in range(3)]
    try:
        wait_until(lambda: listeners.accept_queue_length(sock) == 3, 2, message="3 queued")
        accepted, _ = sock.accept()
        accepted.close()
        assert listeners.accept_queue_length(sock) == 2
    finally:
        for client in clients:
            client.close()
        sock.close()


async def test_new_connections_are_held_off_and_queued_ones_accepted_first() -> None:
    sock, port = _listener()
    queued = [socket.create_connection(("127.0.0.1", port), timeout=2) for _ in range(2)]
    wait_until(lambda: listeners.accept_queue_length(sock) == 2, 2, message="2 queued")
    accepted: list[socket.socket] = []

    def accept_later() -> None:
        time.sleep(0.2)
        for _ in range(2):
            accepted.append(sock.accept()[0])

    acceptor = threading.Thread(target=accept_later)
    acceptor.start()
    started = time.monotonic()
    try:
        filtered = await listeners.quiesce({port}, limit=3)
        waited = time.monotonic() - started
        assert filtered == 1
        # It returned once the queue was empty, not before.
        assert len(accepted) == 2, accepted
        assert waited >= 0.15
        # A new connection gets no answer while the socket still listens (its SYN is dropped):
        # it neither joins the queue nor is accepted.
        assert not await asyncio.to_thread(_connects, port, 0.5)
        assert listeners.accept_queue_length(sock) == 0
        # The queued connections were not reset: they carry data both ways.
        for client, server_side in zip(queued, accepted, strict=True):
            client.sendall(b"ping")
            assert server_side.recv(4) == b"ping"
    finally:
        acceptor.join()
        for each in (*queued, *accepted):
            each.close()
        sock.close()
    # Once closed, the port refuses at once: a client moves on instead of waiting.
    assert not _connects(port, 1.0)


async def test_without_quiescing_a_new_connection_completes() -> None:
    """The control: the same socket, not quiesced, takes a new connection into its queue."""
    sock, port = _listener()
    try:
        assert await asyncio.to_thread(_connects, port, 0.5)
    finally:
        sock.close()
