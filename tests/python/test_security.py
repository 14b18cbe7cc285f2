"""Who may attach a named segment, and listing that survives hostile files.

- attach and describe by name accept by default only an object owned by our
  effective uid without group/other write bits; allow_owner=UID or "any"
  opts in; the refusal (SegmentOwnerError) names the owner, the mode and the
  option; bad allow_owner values fail before any system call;
- list_segments() and describe() read with pread and map nothing, so a file
  another user keeps truncating and regrowing yields errors, never SIGBUS;
- a segment accepted with allow_owner is mapped: when its owner truncates it,
  a reader of ours dies of SIGBUS (shown in a sacrificial child).

The other user is a forked child that drops to ``nobody`` with
os.setgid/os.setuid, so these tests need root (the CI runs as root).
"""
from __future__ import annotations

import errno
import os
import pwd
import select
import signal
import subprocess
import sys
import textwrap
import traceback

import pytest

import zdshm

from zdpy_support import SHM, unique_name

pytestmark = [pytest.mark.crossproc, pytest.mark.timeout(120)]

CHILD_TIMEOUT = 60.0
as_root = pytest.mark.skipif(os.geteuid() != 0,
                             reason="making another user's objects needs root")


def _nobody() -> tuple[int, int]:
    pw = pwd.getpwnam("nobody")
    return pw.pw_uid, pw.pw_gid


class OtherUser:
    """A forked child running body(cmd_r, up_w) as nobody.  The parent
    talks to it through two pipes: send() a command byte, expect() a
    report byte.  Its exit code says whether body returned normally."""

    def __init__(self, body) -> None:
        uid, gid = _nobody()
        self.uid = uid
        cmd_r, self.cmd_w = os.pipe()
        self.up_r, up_w = os.pipe()
        self.pid = os.fork()
        if self.pid == 0:                       # the child: never returns
            code = 0
            try:
                os.close(self.cmd_w)
                os.close(self.up_r)
                os.setgroups([])
                os.setgid(gid)
                os.setuid(uid)
                body(cmd_r, up_w)
            except BaseException:
                traceback.print_exc()
                code = 3
            os._exit(code)
        os.close(cmd_r)
        os.close(up_w)

    def expect(self, want: bytes, timeout: float = CHILD_TIMEOUT) -> None:
        ready, _, _ = select.select([self.up_r], [], [], timeout)
        assert ready, f"the other user's child did not report {want!r}"
        got = os.read(self.up_r, 1)
        assert got == want, f"the other user's child reported {got!r}, not {want!r}"

    def send(self, cmd: bytes) -> None:
        os.write(self.cmd_w, cmd)

    def finish(self) -> int:
        """Tells the child to stop ("x") and returns its exit code."""
        try:
            self.send(b"x")
        except BrokenPipeError:
            pass
        os.close(self.cmd_w)
        os.close(self.up_r)
        _, status = os.waitpid(self.pid, 0)
        return os.waitstatus_to_exitcode(status)


def _remove(name: str) -> None:
    """As root: removes whatever the other user left under name."""
    try:
        os.unlink(os.path.join(SHM, name))
    except FileNotFoundError:
        pass


def _wait_cmd(cmd_r: int, timeout: float) -> bytes:
    ready, _, _ = select.select([cmd_r], [], [], timeout)
    return os.read(cmd_r, 1) if ready else b""


def _serve_segment(name: str):
    """Body of a child that creates a 0666 segment under name, reports "r",
    then on "t" truncates the object to 0 bytes (reports "d"), on "x" (or
    when the parent goes away) closes it and returns."""
    def body(cmd_r: int, up_w: int) -> None:
        seg = zdshm.PosixSegment.create(name, 2, 64, mode=0o666)
        os.write(up_w, b"r")
        truncated = False
        while True:
            cmd = _wait_cmd(cmd_r, CHILD_TIMEOUT)
            if cmd != b"t":
                break
            fd = os.open(os.path.join(SHM, name), os.O_RDWR)
            os.ftruncate(fd, 0)
            os.close(fd)
            truncated = True
            os.write(up_w, b"d")
        if truncated:
            # close() would store the goodbye flag into the truncated
            # object (SIGBUS here too): the exit just unmaps.
            os._exit(0)
        seg.close()
    return body


# --------------------------------------------------------------------------
# (a) A planted file whose size keeps changing: listing never dies
# --------------------------------------------------------------------------

LISTER = textwrap.dedent("""
    import sys, zdshm
    name = sys.argv[1]
    outcomes = {}
    for _ in range(1000):
        zdshm.list_segments()
        try:
            zdshm.describe(name, allow_owner="any")
            k = "ok"
        except zdshm.CorruptSegmentError as exc:
            k = "corrupt"
        outcomes[k] = outcomes.get(k, 0) + 1
        try:
            zdshm.describe(name)
        except zdshm.SegmentOwnerError:
            pass
        else:
            sys.exit("the default policy accepted another user's object")
    print(outcomes.get("ok", 0), outcomes.get("corrupt", 0))
""")


def _segment_image() -> bytes:
    """The bytes of a freshly created, valid segment (closed and removed)."""
    name = unique_name("image")
    seg = zdshm.PosixSegment.create(name, 2, 64)
    try:
        with open(os.path.join(SHM, name), "rb") as f:
            return f.read()
    finally:
        seg.close()
        zdshm.unlink(name)


def _flip_sizes(path: str, image: bytes):
    """Body of a child that plants path (0644) and, until told to stop,
    cycles its size through 0, the valid size (rewriting the valid
    header), a huge size and the valid size again."""
    def body(cmd_r: int, up_w: int) -> None:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
        os.fchmod(fd, 0o644)
        os.ftruncate(fd, len(image))
        os.pwrite(fd, image, 0)
        os.write(up_w, b"r")
        for _ in range(10_000_000):
            if select.select([cmd_r], [], [], 0)[0]:
                break
            os.ftruncate(fd, 0)
            os.ftruncate(fd, len(image))
            os.pwrite(fd, image, 0)
            os.ftruncate(fd, 1 << 40)
            os.ftruncate(fd, len(image))
            os.pwrite(fd, image, 0)
            os.ftruncate(fd, 4096)
        os.close(fd)
    return body


def _sanitizer_env() -> dict[str, str]:
    """The environment for a child that must die of the signal itself: an
    ASan runtime (preloaded in the sanitizer run) would catch SIGBUS."""
    env = dict(os.environ)
    if "ASAN_OPTIONS" in env:
        env["ASAN_OPTIONS"] += ":handle_sigbus=0"
    return env


@as_root
def test_list_and_describe_survive_a_file_changing_size():
    name = unique_name("planted")
    path = os.path.join(SHM, name)
    image = _segment_image()
    other = OtherUser(_flip_sizes(path, image))
    try:
        other.expect(b"r")
        st = os.stat(path)
        assert st.st_uid == other.uid and st.st_mode & 0o777 == 0o644
        p = subprocess.run([sys.executable, "-c", LISTER, name],
                           capture_output=True, timeout=CHILD_TIMEOUT)
        assert p.returncode == 0, (p.returncode, p.stderr.decode())
        ok, corrupt = map(int, p.stdout.split())
        assert ok + corrupt == 1000
    finally:
        code = other.finish()
        _remove(name)
    assert code == 0


# --------------------------------------------------------------------------
# (b) Another user's 0666 segment: refused by default, accepted on request
# --------------------------------------------------------------------------

@as_root
def test_other_users_segment_refused_by_default_accepted_with_allow_owner():
    name = unique_name("foreign")
    other = OtherUser(_serve_segment(name))
    uid = other.uid
    try:
        other.expect(b"r")
        st = os.stat(os.path.join(SHM, name))
        assert st.st_uid == uid and st.st_mode & 0o777 == 0o666

        with pytest.raises(zdshm.SegmentOwnerError) as ei:
            zdshm.PosixSegment.attach(name)
        msg = str(ei.value)
        assert f"owned by uid {uid}" in msg and "mode 0o666" in msg, msg
        assert f"allow_owner={uid}" in msg and "allow_owner='any'" in msg, msg
        assert ei.value.errno == errno.EPERM
        assert isinstance(ei.value, PermissionError)
        assert isinstance(ei.value, zdshm.Error)
        with pytest.raises(zdshm.SegmentOwnerError):
            zdshm.PosixSegment.attach(name, allow_owner=uid + 1)
        with pytest.raises(zdshm.SegmentOwnerError, match=f"allow_owner={uid}"):
            zdshm.describe(name)

        assert name in zdshm.list_segments()
        # The command line shows other users' segments (it only reads).
        p = subprocess.run([sys.executable, "-m", "zdshm", "list"],
                           capture_output=True, timeout=CHILD_TIMEOUT)
        assert p.returncode == 0 and name in p.stdout.decode(), p
        d = zdshm.describe(name, allow_owner=uid)
        assert d["owner_uid"] == uid and d["creator_alive"] is True
        for allow in (uid, "any"):
            seg = zdshm.PosixSegment.attach(name, allow_owner=allow)
            try:
                seg.writer().publish(b"from root")
                assert bytes(seg.read(0))[:9] == b"from root"
            finally:
                seg.close()

        # A descriptor handed over is taken as it is: no owner policy.
        fd = os.open(os.path.join(SHM, name), os.O_RDWR)
        try:
            seg = zdshm.AnonymousSegment.attach_fd(fd)
            assert seg.sealed is False
            seg.close()
        finally:
            os.close(fd)
    finally:
        code = other.finish()
        _remove(name)
    assert code == 0


# --------------------------------------------------------------------------
# (c) allow_owner trusts that user: a truncation kills our waiting reader
# --------------------------------------------------------------------------

WAITER = textwrap.dedent("""
    import sys, zdshm
    seg = zdshm.PosixSegment.attach(sys.argv[1], allow_owner=int(sys.argv[2]))
    r = seg.reader()
    print("waiting", flush=True)
    r.take(timeout=20)
    print("returned", flush=True)
""")


@as_root
def test_truncation_by_an_allowed_owner_kills_a_waiting_reader_with_sigbus():
    name = unique_name("trunc")
    other = OtherUser(_serve_segment(name))
    waiter = None
    try:
        other.expect(b"r")
        waiter = subprocess.Popen([sys.executable, "-c", WAITER, name, str(other.uid)],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  env=_sanitizer_env())
        assert waiter.stdout.readline() == b"waiting\n"
        other.send(b"t")
        other.expect(b"d")
        out, err = waiter.communicate(timeout=CHILD_TIMEOUT)
        # Documented: the named backend cannot stop the owner (README,
        # "Security"); AnonymousSegment is sealed against this.
        assert waiter.returncode == -signal.SIGBUS, (waiter.returncode, out, err)
        # Describing the truncated object is an error, not a signal.
        with pytest.raises(zdshm.CorruptSegmentError):
            zdshm.describe(name, allow_owner="any")
    finally:
        if waiter is not None and waiter.poll() is None:
            waiter.kill()
            waiter.communicate()
        code = other.finish()
        _remove(name)
    assert code == 0


# --------------------------------------------------------------------------
# (d) Our own segment: group/other write bits need allow_owner too
# --------------------------------------------------------------------------

def test_own_segment_writable_by_others_needs_allow_owner(posix_factory):
    euid = os.geteuid()
    seg = posix_factory(slot_count=2, slot_capacity=64, mode=0o666)
    with pytest.raises(zdshm.SegmentOwnerError) as ei:
        zdshm.PosixSegment.attach(seg.name)
    msg = str(ei.value)
    assert f"this process's uid {euid}" in msg and "mode 0o666" in msg, msg
    assert f"allow_owner={euid}" in msg and "allow_owner='any'" in msg, msg
    with pytest.raises(zdshm.SegmentOwnerError):
        zdshm.describe(seg.name)
    assert zdshm.describe(seg.name, allow_owner=euid)["slot_count"] == 2
    assert seg.name in zdshm.list_segments()
    for allow in (euid, "any"):
        other = zdshm.PosixSegment.attach(seg.name, allow_owner=allow)
        other.close()
    # A descriptor handed over is taken as it is: no owner policy.
    fd = os.open(os.path.join(SHM, seg.name), os.O_RDWR)
    try:
        zdshm.AnonymousSegment.attach_fd(fd).close()
    finally:
        os.close(fd)


@pytest.mark.parametrize("mode, accepted", [
    (0o600, True), (0o640, True), (0o644, True), (0o660, False),
    (0o620, False), (0o602, False),
])
def test_default_policy_on_own_segments_is_the_write_bits(posix_factory, mode,
                                                          accepted):
    seg = posix_factory(slot_count=1, slot_capacity=16, mode=mode)
    if accepted:
        zdshm.PosixSegment.attach(seg.name).close()
        assert zdshm.describe(seg.name)["slot_count"] == 1
    else:
        with pytest.raises(zdshm.SegmentOwnerError, match=f"mode 0o{mode:03o}"):
            zdshm.PosixSegment.attach(seg.name)
        with pytest.raises(zdshm.SegmentOwnerError):
            zdshm.describe(seg.name)


@pytest.mark.parametrize("bad, exc", [
    (-1, ValueError), (2**32 - 1, ValueError), (2**32, ValueError),
    (2**70, ValueError), (True, TypeError), (False, TypeError),
    (1.0, TypeError), (float("nan"), TypeError), ("all", ValueError),
    ("ANY", ValueError), ("", ValueError), (b"any", TypeError),
    ([0], TypeError),
])
def test_bad_allow_owner_refused_before_any_system_call(bad, exc):
    missing = unique_name("missing")          # never created
    with pytest.raises(exc, match="allow_owner") as ei:
        zdshm.PosixSegment.attach(missing, allow_owner=bad)
    assert repr(bad)[:20] in str(ei.value)
    with pytest.raises(exc, match="allow_owner"):
        zdshm.describe(missing, allow_owner=bad)


def test_allow_owner_is_keyword_only():
    with pytest.raises(TypeError):
        zdshm.PosixSegment.attach(unique_name("missing"), 0)
    with pytest.raises(TypeError):
        zdshm.describe(unique_name("missing"), 0)
    with pytest.raises(zdshm.SegmentNotFoundError):
        zdshm.PosixSegment.attach(unique_name("missing"), allow_owner=None)


def test_old_layout_named_in_the_refusal():
    """A segment of an earlier layout version is refused at attach and
    describe with CorruptSegmentError naming both versions."""
    name = unique_name("oldlayout")
    seg = zdshm.PosixSegment.create(name, slot_count=2, slot_capacity=64)
    try:
        ours = seg.info()["layout_version"]
        with open(os.path.join(SHM, name), "r+b") as f:
            f.seek(8)                               # header: uint32 version
            f.write((ours - 1).to_bytes(4, "little"))
        for call in (lambda: zdshm.PosixSegment.attach(name),
                     lambda: zdshm.describe(name)):
            with pytest.raises(zdshm.CorruptSegmentError) as e:
                call()
            assert f"layout version {ours - 1}" in str(e.value)
            assert f"version {ours} only" in str(e.value)
    finally:
        seg.close()
        zdshm.unlink(name)
