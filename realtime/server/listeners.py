"""Closing the port without resetting connections the kernel already accepted.

When uvicorn stops listening, every connection still waiting in the listening socket's accept
queue (the kernel finished its handshake, the server had not yet called ``accept``) is reset.
A client, or a balancer such as nginx, that sent its request on such a connection gets a reset
after sending it; nginx then answers 502 and, for a POST, does not try another instance, since
the request may have run. Under load the queue is rarely empty, so the drill behind nginx saw
a 502 in about one run of ten.

:func:`quiesce` runs just before the port closes (Linux only; elsewhere it does nothing):

1. it attaches a socket filter that drops every packet to each listening socket of this
   process, so no new connection completes its handshake: a client's SYN goes unanswered, and
   its retransmission (after about a second) meets a closed port and is refused, which nginx
   and every client library retry elsewhere, the request never having been sent;
2. it waits until the accept queue is empty (the event loop keeps accepting, and those
   connections are answered as usual), at most ``limit`` seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import socket
import struct
import sys
import time
from collections.abc import Collection, Iterator

log = logging.getLogger("realtime.server.listeners")

SO_ATTACH_FILTER = 26
BPF_RET_K = 0x06  # BPF_RET | BPF_K: return the constant, the bytes of the packet to keep


class _SockFilter(ctypes.Structure):
    _fields_ = [
        ("code", ctypes.c_ushort),
        ("jt", ctypes.c_ubyte),
        ("jf", ctypes.c_ubyte),
        ("k", ctypes.c_uint32),
    ]


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.POINTER(_SockFilter))]


# One instruction: keep 0 bytes of every packet, that is drop it.
_DROP_ALL = (_SockFilter * 1)(_SockFilter(BPF_RET_K, 0, 0, 0))
_DROP_ALL_PROG = _SockFprog(1, ctypes.cast(_DROP_ALL, ctypes.POINTER(_SockFilter)))


def listening_sockets(ports: Collection[int] = ()) -> Iterator[socket.socket]:
    """A duplicate of each listening TCP socket of this process, of those on ``ports`` if any
    are given (the caller closes them)."""
    seen: set[int] = set()  # socket inodes: a duplicate may reuse a listed descriptor number
    for name in os.listdir("/proc/self/fd"):
        try:
            fd = os.dup(int(name))
        except OSError:
            continue  # gone meanwhile (the directory listing's own descriptor)
        inode = os.fstat(fd).st_ino
        if inode in seen:
            os.close(fd)
            continue
        seen.add(inode)
        try:
            sock = socket.socket(fileno=fd)
        except OSError:
            os.close(fd)
            continue  # not a socket
        try:
            listening = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN)
            wanted = (
                listening
                and sock.type == socket.SOCK_STREAM
                and sock.family in (socket.AF_INET, socket.AF_INET6)
                and (not ports or sock.getsockname()[1] in ports)
            )
        except OSError:
            wanted = False
        if wanted:
            yield sock
        else:
            sock.close()


def accept_queue_length(sock: socket.socket) -> int:
    """Connections waiting to be accepted: ``tcpi_unacked`` of a listening socket's TCP_INFO."""
    info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104)
    # struct tcp_info: 8 one-byte fields, then u32 rto, ato, snd_mss, rcv_mss, unacked, ...
    return int(struct.unpack_from("I", info, 8 + 4 * 4)[0])


async def quiesce(ports: Collection[int] = (), limit: float = 0.5) -> int:
    """Stop new connections reaching this process's listening sockets (those on ``ports``, if
    given), then wait (at most ``limit`` seconds) for the queued ones to be accepted. Returns
    how many sockets it filtered. Best effort: any failure is logged and the port closes as
    before."""
    if not sys.platform.startswith("linux"):
        return 0
    sockets: list[socket.socket] = []
    try:
        for sock in listening_sockets(ports):
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, bytes(_DROP_ALL_PROG))
        deadline = time.monotonic() + limit
        while any(accept_queue_length(sock) for sock in sockets):
            if time.monotonic() >= deadline:
                log.warning("connections still queued when the port closes")
                break
            await asyncio.sleep(0.01)
        return len(sockets)
    except OSError as exc:
        log.warning("could not hold new connections off before closing the port: %s", exc)
        return 0
    finally:
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.close()
