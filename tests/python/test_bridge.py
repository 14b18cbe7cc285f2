"""Bridges in real processes: zdshm <-> iceoryx2 on this host, zdshm ->
zenoh -> zdshm between two network namespaces joined by a veth pair.

Every process runs with a watchdog (a deadline on every wait, killed at the
end).  iceoryx2 runs in a domain of its own per test (its file prefix starts
with this session's zdshm test prefix), so the /dev/shm check of conftest.py
sees any entry it leaves.  iceoryx2 keeps one ``*.global_mgmt`` object per
domain by design (the domain's own bookkeeping, made by the first node and
never removed by iceoryx2); the tests remove that one entry themselves, after
asserting it is the only one left.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import uuid
import warnings

import pytest

from zdpy_support import SHM, own_prefix, shm_listing, unique_name

iox = pytest.importorskip("iceoryx2", reason="the test extra installs iceoryx2")
zenoh = pytest.importorskip("zenoh", reason="the test extra installs eclipse-zenoh")
np = pytest.importorskip("numpy")

pytestmark = pytest.mark.crossproc

HERE = os.path.dirname(os.path.abspath(__file__))
CHILD = os.path.join(HERE, "zdpy_bridge_children.py")
IOX_N = 10_000
IOX_SHAPE = ("32", "32")                 # float32: 4 KiB frames
ZN_SHAPE = ("512", "512")                # float32: 1 MiB frames
ZN_N = 10_000
ZN_DROP_N = 600
# iproute2, also when PATH is a minimal one (the wheel's test venv).
IP = shutil.which("ip") or shutil.which("ip", path="/usr/sbin:/sbin:/usr/bin:/bin") or "ip"


class Proc:
    """A child process with stdout/stderr in files and stdin a pipe (closing
    it tells the child to finish)."""

    def __init__(self, tmp_path, tag, argv, netns=None):
        self.tag = tag
        self.out_path = tmp_path / f"{tag}.out"
        self.err_path = tmp_path / f"{tag}.err"
        if netns is not None:
            argv = [IP, "netns", "exec", netns] + argv
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        with open(self.out_path, "wb") as out, open(self.err_path, "wb") as err:
            self.p = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=out,
                                      stderr=err, env=env, cwd=HERE)

    def text(self):
        return self.out_path.read_text(), self.err_path.read_text()

    def wait_for(self, what, timeout=60.0, stream="out"):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            out, err = self.text()
            if what in (out if stream == "out" else err):
                return
            if self.p.poll() is not None:
                break
            time.sleep(0.02)
        out, err = self.text()
        raise AssertionError(f"{self.tag}: no {what!r} within {timeout} s "
                             f"(exit {self.p.poll()}):\n{out}\n{err}")

    def finish(self, timeout=60.0):
        """Closes stdin, waits for the exit and returns the last JSON line."""
        try:
            self.p.stdin.close()
        except OSError:
            pass
        try:
            rc = self.p.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"{self.tag}: did not finish within {timeout} s:\n"
                                 f"{self.text()}") from None
        out, err = self.text()
        assert rc == 0, f"{self.tag}: exit {rc}\n{out}\n{err}"
        return json.loads(out.strip().splitlines()[-1])

    def interrupt(self, timeout=30.0):
        """SIGINT (Ctrl-C) to a bridge; its final stats line."""
        self.p.send_signal(signal.SIGINT)
        return self.finish(timeout)

    def result_line(self, timeout=60.0):
        """The JSON line a child prints while it keeps running."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in self.text()[0].splitlines():
                if line.startswith("{"):
                    return json.loads(line)
            if self.p.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError(f"{self.tag}: no result within {timeout} s "
                             f"(exit {self.p.poll()}):\n{self.text()}")

    def kill(self):
        if self.p.poll() is None:
            self.p.kill()
        try:
            self.p.wait(10)
        except subprocess.TimeoutExpired:
            pass


@pytest.fixture
def procs():
    started = []
    yield started
    for p in started:
        p.kill()


def child(tmp_path, procs, tag, *args, netns=None):
    p = Proc(tmp_path, tag, [sys.executable, CHILD, *map(str, args)], netns=netns)
    procs.append(p)
    return p


def bridge(tmp_path, procs, tag, *args, netns=None):
    p = Proc(tmp_path, tag, [sys.executable, "-m", "zdshm", "bridge", *map(str, args)],
             netns=netns)
    procs.append(p)
    p.wait_for("running", stream="err")
    return p


# --------------------------------------------------------------------------
# iceoryx2
# --------------------------------------------------------------------------

@pytest.fixture
def iox_domain():
    """A fresh iceoryx2 domain (file prefix); asserts at the end that it
    left nothing in /dev/shm but its global_mgmt object, and removes that."""
    prefix = f"{own_prefix()}iox{uuid.uuid4().hex[:8]}_"
    yield prefix
    deadline = time.monotonic() + 10
    while True:
        left = sorted(n for n in shm_listing() if n.startswith(prefix))
        others = [n for n in left if not n.endswith(".global_mgmt")]
        if not others or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    for n in left:
        if n.endswith(".global_mgmt"):
            os.unlink(os.path.join(SHM, n))
    assert not others, f"iceoryx2 left entries in /dev/shm: {others}"
    assert len(left) <= 1, left


def test_from_iceoryx2_bit_exact(tmp_path, procs, iox_domain):
    """A process using only iceoryx2's API publishes 10 000 numpy frames;
    a zdshm reader receives them through --from iceoryx2 with dtype, shape,
    order, content and the original sequence numbers."""
    name = unique_name("br-in")
    reader = child(tmp_path, procs, "reader", "zd_reader", name, 1, IOX_N, 10, 0, *IOX_SHAPE)
    reader.wait_for("ready")
    br = bridge(tmp_path, procs, "bridge", name, "--from", "iceoryx2:zdtest/in",
                "--iceoryx2-prefix", iox_domain)
    pub = child(tmp_path, procs, "pub", "iox_pub", iox_domain, "zdtest/in", IOX_N, 0,
                *IOX_SHAPE)
    res = reader.result_line(timeout=120)
    stats = br.interrupt()
    sent = pub.finish()
    reader.finish()
    assert sent["sent"] == IOX_N, (sent, stats, res)
    assert res == {"received": IOX_N, "last": IOX_N - 1, "errors": [], "gaps": 0}
    assert stats["forwarded"] == IOX_N
    assert stats["bytes"] == IOX_N * 32 * 32 * 4
    assert stats["dropped"] == stats["lost"] == 0 and stats["last_error"] is None
    assert not [n for n in shm_listing() if n == name]


def test_to_iceoryx2_bit_exact(tmp_path, procs, iox_domain):
    """A zdshm writer's 10 000 frames reach a process using only iceoryx2's
    API through --to iceoryx2: header, order and content checked there."""
    name = unique_name("br-out")
    writer = child(tmp_path, procs, "writer", "zd_writer", name, IOX_N, 0, *IOX_SHAPE)
    writer.wait_for("ready")
    sub = child(tmp_path, procs, "sub", "iox_sub", iox_domain, "zdtest/out", IOX_N, *IOX_SHAPE)
    sub.wait_for("ready")
    br = bridge(tmp_path, procs, "bridge", name, "--to", "iceoryx2:zdtest/out",
                "--iceoryx2-prefix", iox_domain)
    res = sub.finish(timeout=120)
    assert res == {"received": IOX_N, "errors": []}
    stats = br.interrupt()
    assert stats["forwarded"] == IOX_N and stats["dropped"] == stats["lost"] == 0
    assert writer.finish()["sent"] == IOX_N


def test_iceoryx2_bridge_killed_midstream(tmp_path, procs, iox_domain):
    """The bridge is SIGKILLed mid-stream and started again: the stream goes
    on in order (the frames sent meanwhile are missing, nothing else), and
    once every process ended nothing is left in /dev/shm -- no zdshm name and
    no iceoryx2 entry (the new bridge's node removes the dead node's
    resources, as iceoryx2 does on node creation)."""
    name = unique_name("br-kill")
    n = 4000
    reader = child(tmp_path, procs, "reader", "zd_reader", name, 1, n, 10, 0, *IOX_SHAPE)
    reader.wait_for("ready")
    br = bridge(tmp_path, procs, "bridge1", name, "--from", "iceoryx2:zdtest/kill",
                "--iceoryx2-prefix", iox_domain, "--interval", "0.05")
    pub = child(tmp_path, procs, "pub", "iox_pub", iox_domain, "zdtest/kill", n, 0.0005,
                *IOX_SHAPE)
    deadline = time.monotonic() + 60
    while not re.search(r"forwarded ([1-9][0-9]{2,})", br.text()[1]):
        assert time.monotonic() < deadline, br.text()
        time.sleep(0.02)
    br.p.send_signal(signal.SIGKILL)
    br.p.wait(10)
    br2 = bridge(tmp_path, procs, "bridge2", name, "--from", "iceoryx2:zdtest/kill",
                 "--iceoryx2-prefix", iox_domain)
    res = reader.result_line(timeout=120)
    stats2 = br2.interrupt()
    sent = pub.finish()
    reader.finish()
    assert res["errors"] == [] and res["last"] == n - 1, (res, stats2, sent)
    assert 0 < res["received"] <= n
    assert stats2["forwarded"] > 0
    assert sent["sent"] == n
    assert name not in shm_listing()


# --------------------------------------------------------------------------
# zenoh across two network namespaces
# --------------------------------------------------------------------------

class Hosts:
    """Two network namespaces joined by a veth pair (10.x.y.1 <-> 10.x.y.2),
    or, when namespaces cannot be made here, loopback (with the reason)."""

    def __init__(self):
        tag = uuid.uuid4().hex[:6]
        self.ns = (f"zdA{os.getpid()}{tag}", f"zdB{os.getpid()}{tag}")
        self.veth = (f"zdva{tag}", f"zdvb{tag}")
        oct3 = int(tag[:2], 16)
        self.addr = (f"10.213.{oct3}.1", f"10.213.{oct3}.2")
        self.reason = None
        self.made = []
        try:
            self._make()
        except (OSError, subprocess.CalledProcessError) as exc:
            self.cleanup()
            self.reason = (f"network namespaces cannot be made here ({exc}); "
                           f"the zenoh bridge test runs over loopback instead")
            self.ns = (None, None)
            self.addr = ("127.0.0.1", "127.0.0.1")

    def _ip(self, *args):
        subprocess.run([IP, *args], check=True, capture_output=True, timeout=20)

    def _make(self):
        for ns in self.ns:
            self._ip("netns", "add", ns)
            self.made.append(ns)
        self._ip("link", "add", self.veth[0], "type", "veth", "peer", "name", self.veth[1])
        for ns, dev, addr in zip(self.ns, self.veth, self.addr):
            self._ip("link", "set", dev, "netns", ns)
            self._ip("-n", ns, "addr", "add", f"{addr}/30", "dev", dev)
            self._ip("-n", ns, "link", "set", dev, "up")
            self._ip("-n", ns, "link", "set", "lo", "up")

    def cleanup(self):
        # Deleting a namespace deletes the veth end in it, and so the pair.
        for ns in self.made:
            subprocess.run([IP, "netns", "del", ns], capture_output=True, timeout=20)
        self.made.clear()


def _zenoh_files():
    return {n for n in shm_listing() if n.endswith(".zenoh")}


@pytest.fixture
def hosts():
    zenoh_before = _zenoh_files()
    h = Hosts()
    if h.reason:
        warnings.warn(h.reason)
        print(h.reason, file=sys.stderr)
    try:
        yield h
    finally:
        h.cleanup()
        assert not any(ns in subprocess.run([IP, "netns", "list"], capture_output=True,
                                             text=True).stdout for ns in h.ns if ns)
    # The bridges turn zenoh's own shared-memory transport off: no files.
    assert not _zenoh_files() - zenoh_before


def _zenoh_pipeline(tmp_path, procs, hosts, n, policy, slow, pace=0, restart=False):
    """Writer and bridge --to zenoh on host A; bridge --from zenoh and two
    readers (one of them slow when slow > 0) on host B.  restart: the bridge
    on A is SIGKILLed mid-stream and started again."""
    nsA, nsB = hosts.ns
    port = 17000 + int(uuid.uuid4().hex[:3], 16)
    ep = f"tcp/{hosts.addr[1]}:{port}"
    key = f"zdtest/{uuid.uuid4().hex[:8]}"
    name_a, name_b = unique_name("zn-a"), unique_name("zn-b")
    idle = 4 if policy == "drop" else 30
    r0 = child(tmp_path, procs, "reader0", "zd_reader", name_b, 1, n, idle, 0, *ZN_SHAPE,
               netns=nsB)
    r0.wait_for("ready")
    r1 = child(tmp_path, procs, "reader1", "zd_reader", name_b, 0, n, idle, slow, *ZN_SHAPE,
               netns=nsB)
    r1.wait_for("ready")
    b_in = bridge(tmp_path, procs, "from-zenoh", name_b, "--from", f"zenoh:{key}",
                  "--listen", ep, "--policy", policy, netns=nsB)
    writer = child(tmp_path, procs, "writer", "zd_writer", name_a, n, pace, *ZN_SHAPE, netns=nsA)
    writer.wait_for("ready")
    b_out = bridge(tmp_path, procs, "to-zenoh", name_a, "--to", f"zenoh:{key}",
                   "--connect", ep, "--interval", "0.05", netns=nsA)
    if restart:
        deadline = time.monotonic() + 60
        while not re.search(r"forwarded ([1-9][0-9]{2,})", b_out.text()[1]):
            assert time.monotonic() < deadline, b_out.text()
            time.sleep(0.02)
        b_out.p.send_signal(signal.SIGKILL)
        b_out.p.wait(10)
        time.sleep(0.3)                  # frames committed meanwhile reach nobody
        b_out = bridge(tmp_path, procs, "to-zenoh-2", name_a, "--to", f"zenoh:{key}",
                       "--connect", ep, netns=nsA)
    results = [r.result_line(timeout=180) for r in (r0, r1)]
    stats_out = b_out.interrupt()
    writer_res = writer.finish(timeout=60)
    stats_in = b_in.interrupt()
    for r in (r0, r1):
        r.finish()
    return results, stats_out, stats_in, writer_res


def test_zenoh_across_hosts_block(tmp_path, procs, hosts):
    """1 MiB float32 frames from host A to two readers on host B under
    block: all of them arrive, bit-exact, in order, with dtype and shape."""
    results, out, inn, w = _zenoh_pipeline(tmp_path, procs, hosts, ZN_N, "block", 0)
    for res in results:
        assert res == {"received": ZN_N, "last": ZN_N - 1, "errors": [], "gaps": 0}
    assert out["forwarded"] == inn["forwarded"] == ZN_N
    assert out["dropped"] == out["lost"] == inn["dropped"] == inn["lost"] == 0
    assert w["sent"] == ZN_N


def test_zenoh_across_hosts_drop_counted(tmp_path, procs, hosts):
    """Under drop with a slow reader on host B the bridge into B drops what
    B's segment cannot take: every frame either arrives or is counted."""
    results, out, inn, w = _zenoh_pipeline(tmp_path, procs, hosts, ZN_DROP_N, "drop", 0.01)
    for res in results:
        assert res["errors"] == []
    assert results[0]["received"] == results[1]["received"]
    arrived = results[1]["received"]
    assert inn["dropped"] > 0
    assert inn["forwarded"] == arrived
    assert inn["dropped"] + inn["lost"] == ZN_DROP_N - arrived
    assert out["forwarded"] == ZN_DROP_N


def test_zenoh_bridge_restart_gap_counted(tmp_path, procs, hosts):
    """The bridge on host A is SIGKILLed mid-stream and started again: zenoh
    reconnects, the stream goes on in order, and the bridge on host B counts
    exactly the frames that did not arrive as lost."""
    n = 1500
    results, out, inn, w = _zenoh_pipeline(tmp_path, procs, hosts, n, "block", 0,
                                           pace=0.002, restart=True)
    for res in results:
        assert res["errors"] == [] and res["last"] == n - 1, res
    arrived = results[0]["received"]
    assert results[1]["received"] == arrived
    assert arrived < n and results[0]["gaps"] >= 1
    assert inn["lost"] == n - arrived
    assert inn["forwarded"] == arrived and inn["dropped"] == 0
    assert w["sent"] == n


def test_origin_is_none_for_a_plain_sample(posix_factory):
    from zdshm import bridge as zb
    seg = posix_factory(slot_count=2, slot_capacity=256)
    r = seg.reader()
    w = seg.writer()
    w.publish(np.arange(4, dtype=np.float32))
    with r.take(timeout=5) as s:
        assert zb.origin(s, seg) is None
        with pytest.raises(TypeError, match="Segment"):
            zb.origin(s, "frames")
    with pytest.raises(TypeError, match="Sample"):
        zb.origin(b"x", seg)
    r.close()
    w.close()


def test_bridge_arguments_checked():
    from zdshm import bridge as zb
    from zdshm.cli import main
    with pytest.raises(ValueError, match="policy"):
        zb.ToZenoh("frames", "a/b", policy="sometimes")
    with pytest.raises(ValueError, match="endpoints"):
        zb.FromZenoh("frames", "a/b", connect=["localhost"])
    with pytest.raises(ValueError, match="depth"):
        zb.ToIceoryx2("frames", "a/b", depth=0)
    with pytest.raises(ValueError, match="key expression"):
        zb.ToZenoh("frames", "")
    with pytest.raises(ValueError, match="ENGINE:NAME"):
        zb.parse_target("mqtt:a/b")
    for argv in (["bridge", "frames", "--to", "mqtt:a/b"],
                 ["bridge", "frames", "--to", "zenoh:a/b", "--iceoryx2-prefix", "x"],
                 ["bridge", "frames", "--to", "iceoryx2:a/b", "--connect", "tcp/1.2.3.4:1"],
                 ["bridge", "frames", "--to", "zenoh:a/b", "--create", "4", "1024"],
                 ["bridge", "frames"]):
        with pytest.raises(SystemExit) as e:
            main(argv)
        assert e.value.code == 2, argv


def test_bridge_start_reports_a_missing_segment():
    from zdshm import bridge as zb
    b = zb.ToZenoh(unique_name("absent"), "zdtest/absent")
    with pytest.raises(Exception) as e:
        b.start()
    assert "absent" in str(e.value) or isinstance(e.value, FileNotFoundError)
    assert not b.running


def test_zenoh_bridges_in_process_with_size_classes():
    """The Python API on loopback, both bridges in this process: frames of
    two sizes land in the smallest size class that holds frame + origin
    record, with format, shape and origin; the stats add up."""
    import zdshm
    from zdshm import arrays
    from zdshm import bridge as zb
    port = 18000 + int(uuid.uuid4().hex[:3], 16)
    ep = f"tcp/127.0.0.1:{port}"
    key = f"zdtest/{uuid.uuid4().hex[:8]}"
    src = zdshm.MemorySegment(4, 8192)
    dst = zdshm.MemorySegment(classes=[(4, 64 + zb.ORIGIN_SIZE), (4, 4000 + zb.ORIGIN_SIZE)])
    r = dst.reader()
    frames = [np.arange(16, dtype=np.float32) + i if i % 2 else
              np.arange(1000, dtype=np.int32).reshape(10, 100) * i for i in range(20)]
    got = []
    with zb.FromZenoh(dst, key, listen=[ep]) as inn, \
            zb.ToZenoh(src, key, connect=[ep]) as out:
        assert repr(out).startswith("<zdshm.bridge.ToZenoh")
        w = src.writer(timeout=10)
        sns = [arrays.publish_array(w, f) for f in frames]
        for _ in frames:
            with r.take(timeout=30) as s:
                a = np.asarray(s)
                got.append((a.copy(), zb.origin(s, dst), dst.slot_capacity_of(s.slot)))
                del a
        w.close()
    for f, sn, (a, o, cap) in zip(frames, sns, got):
        assert a.dtype == f.dtype and a.shape == f.shape and np.array_equal(a, f)
        assert o is not None and o.sn == sn
        assert cap == (64 + zb.ORIGIN_SIZE if f.nbytes == 64 else 4000 + zb.ORIGIN_SIZE)
    so, si = out.stats(), inn.stats()
    assert so["forwarded"] == si["forwarded"] == len(frames)
    assert so["bytes"] == si["bytes"] == sum(f.nbytes for f in frames)
    assert si["dropped"] == si["lost"] == 0 and not out.running and not inn.running
    r.close()
    src.close()
    dst.close()
