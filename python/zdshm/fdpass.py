"""Handing an anonymous segment to another process as a descriptor.

An :class:`~zdshm.AnonymousSegment` has no name; another process attaches
to it through its descriptor (``AnonymousSegment.attach_fd``).  Two ways to
get the descriptor there:

- a child started by this process inherits it::

      seg = zdshm.AnonymousSegment(8, 1 << 20)
      subprocess.Popen([sys.executable, "child.py", str(seg.fileno())],
                       pass_fds=[seg.fileno()])
      # in the child: seg = zdshm.AnonymousSegment.attach_fd(fd); os.close(fd)

  (``pass_fds`` makes the descriptor inheritable in the child only; with
  ``os.fork`` it is inherited anyway; an ``exec`` without ``pass_fds`` needs
  an inheritable copy, ``os.dup(seg.fileno())`` then
  ``os.set_inheritable(copy, True)``, which the caller closes);

- any process connected by an ``AF_UNIX`` socket receives it with
  :func:`recv_segment` after the owner called :func:`send_segment`
  (``SCM_RIGHTS``).

The receiving side gets its own handle with its own liveness locks; the
descriptor that travelled is closed by :func:`recv_segment` once attached.
"""
from __future__ import annotations

import os
import socket

from zdshm._zdshm import AnonymousSegment, CorruptSegmentError

__all__ = ["recv_segment", "send_segment"]

# Sent with the descriptor, so a receiver can tell a segment hand-over from
# anything else arriving on the socket.
_MAGIC = b"zdshm-segment-fd\x01"


def _check_unix_socket(sock: object, what: str) -> socket.socket:
    if not isinstance(sock, socket.socket):
        raise TypeError(f"{what}: sock must be a socket.socket, not "
                        f"{type(sock).__name__}")
    if sock.family != socket.AF_UNIX:
        raise ValueError(f"{what}: sock must be an AF_UNIX socket (descriptors "
                         f"travel only over unix sockets), not {sock.family!r}")
    return sock


def send_segment(sock: socket.socket, seg: AnonymousSegment) -> None:
    """Sends ``seg``'s descriptor over the connected ``AF_UNIX`` socket
    ``sock`` (``SCM_RIGHTS``); the peer calls :func:`recv_segment`.
    ``seg`` stays open and usable here."""
    _check_unix_socket(sock, "send_segment")
    if not isinstance(seg, AnonymousSegment):
        raise TypeError("send_segment: seg must be an AnonymousSegment (a named "
                        f"segment is shared by its name), not {type(seg).__name__}")
    socket.send_fds(sock, [_MAGIC], [seg.fileno()])


def recv_segment(sock: socket.socket) -> AnonymousSegment:
    """Receives a descriptor sent by :func:`send_segment` on the ``AF_UNIX``
    socket ``sock`` and attaches to it.  Blocks like ``sock.recvmsg`` (the
    socket's timeout applies).  Every descriptor that arrived is closed
    before returning, on success and on error.

    Raises EOFError if the peer closed the socket first,
    CorruptSegmentError if what arrived is not one segment descriptor, and
    whatever ``AnonymousSegment.attach_fd`` raises for the descriptor."""
    _check_unix_socket(sock, "recv_segment")
    msg, fds, flags, _ = socket.recv_fds(sock, len(_MAGIC), 1,
                                         socket.MSG_CMSG_CLOEXEC)
    try:
        if not msg and not fds:
            raise EOFError("recv_segment: the peer closed the socket before "
                           "sending a segment")
        # A stream socket may split the few payload bytes; the descriptor
        # came with the first of them.
        while len(msg) < len(_MAGIC) and sock.type == socket.SOCK_STREAM:
            more = sock.recv(len(_MAGIC) - len(msg))
            if not more:
                break
            msg += more
        if msg != _MAGIC or len(fds) != 1 or flags & socket.MSG_CTRUNC:
            raise CorruptSegmentError(
                f"recv_segment: expected one segment descriptor, got "
                f"{len(fds)} descriptor(s) with payload {msg[:32]!r}")
        return AnonymousSegment.attach_fd(fds[0])
    finally:
        for fd in fds:
            os.close(fd)
