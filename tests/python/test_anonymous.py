"""Sealed anonymous segments: no name, handed over as a descriptor (pass_fds,
a unix socket), validated on attach, and not truncatable by any holder."""
from __future__ import annotations

import errno
import json
import os
import socket
import subprocess
import sys
import tempfile
import textwrap

import numpy as np
import pytest

import zdshm

from zdpy_support import shm_listing

pytestmark = [pytest.mark.crossproc, pytest.mark.timeout(90)]

CHILD_TIMEOUT = 30

# A child that attaches through a descriptor it inherited or receives, takes
# the samples the parent committed and reports them as JSON.
CHILD = textwrap.dedent(r"""
    import json, os, socket, sys
    import numpy as np
    import zdshm

    how, arg, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    out = {}
    if how == "fd":
        fd = int(arg)
        out["truncate"] = []
        size = os.fstat(fd).st_size
        for new in (0, size - 4096, size + 4096):
            try:
                os.ftruncate(fd, new)
                out["truncate"].append("ok")
            except OSError as e:
                out["truncate"].append(e.errno)
        seg = zdshm.AnonymousSegment.attach_fd(fd)
        os.close(fd)
    else:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(20)
        sock.connect("\0" + arg)          # abstract address: no file
        seg = zdshm.recv_segment(sock)
        sock.close()
    out["sealed"] = seg.sealed
    out["backend"] = seg.backend
    out["is_creator"] = seg.is_creator
    out["creator_alive"] = seg.creator_alive   # the creator's lock, seen here
    r = seg.reader(join_last=count)
    out["samples"] = []
    for _ in range(count):
        s = r.take(timeout=20)
        a = np.asarray(s)
        out["samples"].append({"sn": s.sn, "data": a.tolist(),
                               "zero_copy": a.ctypes.data == s.address})
        del a
        s.release()
    r.close()
    seg.close()
    print(json.dumps(out))
""")


def _run_child(args, **kw):
    p = subprocess.Popen([sys.executable, "-c", CHILD, *map(str, args)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kw)
    return p


def _finish(p):
    try:
        out, err = p.communicate(timeout=CHILD_TIMEOUT)
    except subprocess.TimeoutExpired:
        p.kill()
        p.communicate()
        pytest.fail("child timed out")
    assert p.returncode == 0, err.decode()
    return json.loads(out)


def _publish(seg, count):
    w = seg.writer(timeout=5)
    arrays = [np.arange(16, dtype=np.int32) * (k + 1) for k in range(count)]
    for a in arrays:
        w.publish(a)
    w.close()
    return arrays


def _check_samples(report, arrays):
    assert [s["data"] for s in report["samples"]] == [a.tolist() for a in arrays]
    assert [s["sn"] for s in report["samples"]] == list(range(len(arrays)))
    assert all(s["zero_copy"] for s in report["samples"])


def _own_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


def _nameless(fd: int) -> bool:
    """The object is a memfd and no entry of /dev/shm is it."""
    st = os.fstat(fd)
    others = []
    for n in shm_listing():
        try:
            o = os.stat(os.path.join("/dev/shm", n))
            others.append((o.st_dev, o.st_ino))
        except OSError:
            pass                                  # gone meanwhile
    return os.readlink(f"/proc/self/fd/{fd}").startswith("/memfd:") and \
        (st.st_dev, st.st_ino) not in others


def test_create_is_sealed_nameless_and_private():
    with zdshm.AnonymousSegment(4, 256) as seg:
        assert isinstance(seg, zdshm.Segment)
        assert seg.backend == "anonymous" and seg.info()["backend"] == "anonymous"
        assert seg.sealed and seg.is_creator
        assert seg.info()["name"] is None
        fd = seg.fileno()
        assert isinstance(fd, int) and not os.get_inheritable(fd)
        assert os.fstat(fd).st_size == seg.total_size
        assert _nameless(fd)
        # Not even the creator can change the size.
        for new in (0, seg.total_size - 1, seg.total_size + 4096):
            with pytest.raises(PermissionError) as ei:
                os.ftruncate(fd, new)
            assert ei.value.errno == errno.EPERM
    with pytest.raises(zdshm.ClosedError):
        seg.fileno()
    with pytest.raises(OSError):
        os.fstat(fd)                              # closed with the segment


def test_child_attaches_through_pass_fds_and_cannot_truncate():
    seg = zdshm.AnonymousSegment(8, 256)
    try:
        mine = seg.reader()
        arrays = _publish(seg, 3)
        fd = seg.fileno()
        report = _finish(_run_child(["fd", fd, 3], pass_fds=[fd]))
        assert _nameless(fd)
        assert report["truncate"] == [errno.EPERM] * 3
        assert report["sealed"] and report["backend"] == "anonymous"
        assert report["is_creator"] is False
        assert report["creator_alive"] is True
        _check_samples(report, arrays)
        # After the peer's attempts the size is intact and this reader still
        # reads correct data (no SIGBUS).
        assert os.fstat(fd).st_size == seg.total_size
        for a in arrays:
            with mine.take(timeout=1) as s:
                np.testing.assert_array_equal(np.asarray(s), a)
        later = _publish(seg, 1)[0]
        with mine.take(timeout=1) as s:
            np.testing.assert_array_equal(np.asarray(s), later)
    finally:
        seg.close()


def test_child_receives_over_unix_socket():
    seg = zdshm.AnonymousSegment(8, 256)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        arrays = _publish(seg, 2)
        addr = f"zdpytest-anon-{os.getpid()}-{id(seg)}"
        listener.bind("\0" + addr)                   # abstract: no file
        listener.listen(1)
        listener.settimeout(CHILD_TIMEOUT)
        p = _run_child(["sock", addr, 2])     # inherits nothing but stdio
        conn, _ = listener.accept()
        with conn:
            zdshm.send_segment(conn, seg)
        report = _finish(p)
        assert report["sealed"] and report["is_creator"] is False
        assert report["creator_alive"] is True
        _check_samples(report, arrays)
        assert seg.info()["readers_active"] == 0      # the child closed its reader
    finally:
        listener.close()
        seg.close()


def test_send_and_recv_in_process_close_every_descriptor():
    before = _own_fds()
    seg = zdshm.AnonymousSegment(2, 64)
    a, b = socket.socketpair()
    try:
        zdshm.send_segment(a, seg)
        other = zdshm.recv_segment(b)
        w = seg.writer()
        w.publish(b"through the socket")
        with other.read(0) as s:
            assert bytes(s) == b"through the socket"
        del s            # a Sample object keeps its mapping (and descriptor)
        other.close()
        w.close()
    finally:
        a.close()
        b.close()
        seg.close()
    assert _own_fds() == before


def test_recv_segment_errors():
    a, b = socket.socketpair()
    with a, b:
        a.sendall(b"not a segment at all")
        with pytest.raises(zdshm.CorruptSegmentError):
            zdshm.recv_segment(b)
    a, b = socket.socketpair()
    with b:
        a.close()
        with pytest.raises(EOFError):
            zdshm.recv_segment(b)
    r, w = os.pipe()
    a, b = socket.socketpair()
    try:
        before = _own_fds()
        socket.send_fds(a, [b"zdshm-segment-fd\x01"], [r])  # right header, a pipe
        with pytest.raises(zdshm.CorruptSegmentError):
            zdshm.recv_segment(b)
        assert _own_fds() == before                         # received fd closed
    finally:
        for fd in (r, w):
            os.close(fd)
        a.close()
        b.close()
    with pytest.raises(TypeError, match="AnonymousSegment"):
        zdshm.send_segment(socket.socket(socket.AF_UNIX), zdshm.MemorySegment(1, 8))
    with socket.socket(socket.AF_INET) as inet, pytest.raises(ValueError, match="AF_UNIX"):
        zdshm.recv_segment(inet)
    with pytest.raises(TypeError):
        zdshm.recv_segment(3)


def _garbage_fds():
    """(label, fd, expected exception) for descriptors that are no segment."""
    out = []
    r, w = os.pipe()
    out += [("pipe-read", r, zdshm.CorruptSegmentError),
            ("pipe-write", w, zdshm.CorruptSegmentError)]
    f = tempfile.TemporaryFile()
    f.write(os.urandom(8192))
    f.flush()
    out.append(("regular-garbage", os.dup(f.fileno()), zdshm.CorruptSegmentError))
    f.close()
    empty = os.memfd_create("zdpytest-empty")
    out.append(("empty-memfd", empty, zdshm.CorruptSegmentError))
    short = os.memfd_create("zdpytest-short")
    with zdshm.AnonymousSegment(4, 4096) as real:
        head = os.pread(real.fileno(), 8192, 0)        # a real header, cut short
    os.write(short, head)
    out.append(("short-memfd", short, zdshm.CorruptSegmentError))
    with zdshm.AnonymousSegment(2, 64) as real:
        ro = os.open(f"/proc/self/fd/{real.fileno()}", os.O_RDONLY)
    out.append(("read-only", ro, zdshm.SegmentPermissionError))
    s1, s2 = socket.socketpair()
    out.append(("socket", s1.detach(), zdshm.CorruptSegmentError))
    s2.close()
    return out


def test_attach_fd_of_non_segments_raises_clear_errors():
    cases = _garbage_fds()
    before = _own_fds()
    try:
        for label, fd, exc in cases:
            with pytest.raises(exc) as ei:
                zdshm.AnonymousSegment.attach_fd(fd)
            assert isinstance(ei.value, zdshm.Error), label
            assert f"descriptor {fd}" in str(ei.value), label
        assert _own_fds() == before               # nothing opened stays open
    finally:
        for _, fd, _ in cases:
            os.close(fd)


@pytest.mark.parametrize("bad, exc", [
    (-1, ValueError), (-(2 ** 70), ValueError), (2 ** 31, ValueError),
    (2 ** 70, OverflowError), ("3", TypeError), (3.0, TypeError),
    (True, TypeError), (None, TypeError), (b"\x03", TypeError),
])
def test_attach_fd_bad_arguments_before_any_system_call(bad, exc):
    before = _own_fds()
    with pytest.raises(exc, match="fd"):
        zdshm.AnonymousSegment.attach_fd(bad)
    assert _own_fds() == before


def test_attach_fd_closed_descriptor_is_ebadf():
    r, w = os.pipe()
    os.close(r)
    os.close(w)
    with pytest.raises(zdshm.Error) as ei:
        zdshm.AnonymousSegment.attach_fd(r)
    assert ei.value.errno == errno.EBADF


def test_named_segment_attached_by_fd_is_not_sealed(posix_factory):
    named = posix_factory(slot_count=2, slot_capacity=64)
    fd = os.open(f"/dev/shm/{named.name}", os.O_RDWR)
    try:
        seg = zdshm.AnonymousSegment.attach_fd(fd)
    finally:
        os.close(fd)                              # the handle keeps its own
    with seg:
        assert not seg.sealed and not seg.is_creator
        named.writer().publish(b"named")
        with seg.read(0) as s:
            assert bytes(s) == b"named"


def test_no_descriptor_leaks_over_many_segments():
    before = _own_fds()
    for _ in range(40):
        seg = zdshm.AnonymousSegment(2, 4096)
        other = zdshm.AnonymousSegment.attach_fd(seg.fileno())
        other.close()
        seg.close()
    assert _own_fds() == before


def test_creator_bad_arguments():
    with pytest.raises(ValueError, match="slot_count"):
        zdshm.AnonymousSegment(0, 64)
    with pytest.raises(TypeError):
        zdshm.AnonymousSegment("4", 64)
    with pytest.raises(TypeError):
        zdshm.AnonymousSegment(4, 64, mode=0o600)
    before = _own_fds()
    with pytest.raises(zdshm.NoSpaceError):
        zdshm.AnonymousSegment(2 ** 20, 2 ** 40)      # beyond memory: at once
    assert _own_fds() == before
