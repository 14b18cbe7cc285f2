"""Pickling and copying of zdshm objects.

A PosixSegment pickles, under every protocol, to an attach of its name that
checks the segment is still the one pickled (creation time, creator pid,
geometry, type hash).  Every other object refuses with a TypeError naming
the object and what to pass instead; copy.copy/deepcopy refuse every
segment.  The cross-process tests hand segments to spawned and forkserver
children and to a ProcessPoolExecutor."""
from __future__ import annotations

import concurrent.futures
import copy
import multiprocessing as mp
import os
import pickle

import pytest

import zdshm

import zdpy_handoff
from zdpy_support import unique_name

pytestmark = pytest.mark.timeout(60)

PROTOCOLS = range(pickle.HIGHEST_PROTOCOL + 1)
JOIN = 20.0


def _objects(seg):
    w, r = seg.writer(), seg.reader()
    w.publish(b"x")
    sample = r.take(timeout=1)
    loan = w.loan()
    return {"reader": r, "writer": w, "loan": loan, "sample": sample}


ADVICE = {
    "reader": "pass its PosixSegment (which pickles to an attach of its name) "
              "and call seg.reader()",
    "writer": "pass its PosixSegment (which pickles to an attach of its name) "
              "and call seg.writer()",
    "loan": "commit it here",
    "sample": "sample.tobytes()",
}


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_handles_on_a_segment_refuse_every_protocol(make_segment, protocol):
    seg = make_segment()
    objects = _objects(seg)
    for kind, obj in objects.items():
        with pytest.raises(TypeError) as ei:
            pickle.dumps(obj, protocol=protocol)
        msg = str(ei.value)
        assert type(obj).__name__ in msg, msg
        assert ADVICE[kind] in msg, msg
    objects["loan"].discard()
    objects["sample"].release()


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_memory_and_anonymous_segments_refuse_every_protocol(protocol):
    mem = zdshm.MemorySegment(2, 64)
    anon = zdshm.AnonymousSegment(2, 64)
    try:
        with pytest.raises(TypeError, match="MemorySegment lives in one process "
                           "only.*PosixSegment, which pickles"):
            pickle.dumps(mem, protocol=protocol)
        with pytest.raises(TypeError, match=r"AnonymousSegment has no name and "
                           r"travels as a descriptor: zdshm.send_segment.*"
                           r"AnonymousSegment.attach_fd\(fd\)"):
            pickle.dumps(anon, protocol=protocol)
    finally:
        mem.close()
        anon.close()


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_posix_segment_pickles_to_an_attach(posix_factory, protocol):
    seg = posix_factory(slot_count=4, slot_capacity=64)
    r = seg.reader()
    before = seg.info()["live_attachments"]
    other = pickle.loads(pickle.dumps(seg, protocol=protocol))
    try:
        assert type(other) is zdshm.PosixSegment and other is not seg
        assert other.name == seg.name and not other.is_creator
        assert (other.slot_count, other.slot_capacity) == (4, 64)
        assert seg.info()["live_attachments"] == before + 1
        other.writer().publish(b"through the copy %d" % protocol)
        s = r.take(timeout=1)
        assert s.tobytes() == b"through the copy %d" % protocol
        s.release()
    finally:
        other.close()
    assert seg.info()["live_attachments"] == before


def test_attached_handle_pickles_with_its_type_hash(posix_factory):
    seg = posix_factory(slot_count=2, slot_capacity=32, type_hash=b"h" * 16)
    attached = posix_factory.attach(seg)
    again = pickle.loads(pickle.dumps(attached))
    try:
        assert again.type_hash == b"h" * 16 and not again.is_creator
    finally:
        again.close()


def test_pickle_carries_the_attach_owner_policy(posix_factory):
    # A group-writable segment: the default attach policy refuses it, its
    # creator's pickle (and an attach given allow_owner) carries the policy.
    seg = posix_factory(slot_count=2, slot_capacity=32, mode=0o660)
    with pytest.raises(zdshm.SegmentOwnerError):
        zdshm.PosixSegment.attach(seg.name)
    assert seg.__reduce_ex__(2)[1][2] == os.geteuid()
    by_creator = pickle.loads(pickle.dumps(seg))
    try:
        assert by_creator.name == seg.name
    finally:
        by_creator.close()
    anyone = posix_factory.__class__("posix")
    try:
        attached = zdshm.PosixSegment.attach(seg.name, allow_owner="any")
        anyone.segments.append(attached)
        assert attached.__reduce_ex__(4)[1][2] == "any"
        again = pickle.loads(pickle.dumps(attached, protocol=0))
        anyone.segments.append(again)
        assert again.name == seg.name
    finally:
        anyone.cleanup()
    plain = posix_factory()
    assert plain.__reduce_ex__(2)[1][2] is None


def test_recreated_name_is_refused(posix_factory):
    seg = posix_factory(slot_count=4, slot_capacity=64)
    name = seg.name
    data = pickle.dumps(seg)
    seg.close()
    zdshm.unlink(name)
    again = zdshm.PosixSegment.create(name, 4, 64)      # same geometry
    posix_factory.segments.append(again)
    before = again.info()["live_attachments"]
    with pytest.raises(zdshm.SegmentNotFoundError) as ei:
        pickle.loads(data)
    msg = str(ei.value)
    assert isinstance(ei.value, FileNotFoundError)
    assert f"attach pickled segment {name!r}" in msg, msg
    assert "another segment (removed and created again)" in msg, msg
    assert "created_realtime_ns" in msg and "slot_count" not in msg, msg
    assert again.info()["live_attachments"] == before   # let go again


def test_other_geometry_is_named(posix_factory):
    seg = posix_factory(slot_count=4, slot_capacity=64)
    ctor, (name, identity, policy) = seg.__reduce_ex__(4)
    for key, value in [("slot_count", 8), ("slot_capacity", 128),
                       ("type_hash", b"t" * 16), ("owner_pid", 1)]:
        forged = dict(identity, **{key: value})
        with pytest.raises(zdshm.SegmentNotFoundError,
                           match=f"{key} {value!r} when pickled, "):
            ctor(name, forged, policy)
    assert ctor(name, identity, policy).close() is None


def test_vanished_name_is_not_found(posix_factory):
    seg = posix_factory(slot_count=4, slot_capacity=64)
    data = pickle.dumps(seg)
    seg.unlink()
    with pytest.raises(zdshm.SegmentNotFoundError,
                       match=f"attach pickled segment {seg.name!r}: no such"):
        pickle.loads(data)


def test_bad_identity_is_refused_before_attaching(posix_factory):
    seg = posix_factory()
    ctor, (name, identity, policy) = seg.__reduce_ex__(2)
    missing = unique_name("never")     # TypeError, not SegmentNotFoundError
    for bad in [None, {}, dict(identity, extra=1),
                dict(identity, slot_count="4"), dict(identity, owner_pid=True),
                dict(identity, type_hash=b"short")]:
        with pytest.raises(TypeError, match="identity must be the dict"):
            ctor(missing, bad, policy)
    with pytest.raises(ValueError, match="allow_owner"):
        ctor(missing, identity, "nobody")
    with pytest.raises(TypeError, match="takes"):
        ctor(missing, identity)


def test_closed_segment_does_not_pickle(posix_factory):
    seg = posix_factory()
    seg.close()
    with pytest.raises(zdshm.ClosedError, match="cannot pickle the segment"):
        pickle.dumps(seg)


def test_handle_inherited_across_fork_does_not_pickle(posix_factory):
    seg = posix_factory()
    pid = os.fork()
    if pid == 0:
        code = 3
        try:
            pickle.dumps(seg)
        except zdshm.ForkedHandleError:
            code = 0
        except BaseException:
            code = 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert pickle.loads(pickle.dumps(seg)).close() is None   # still fine here


@pytest.mark.parametrize("backend", ["memory", "posix", "anonymous"])
@pytest.mark.parametrize("how", [copy.copy, lambda seg: copy.deepcopy({"seg": seg})],
                         ids=["copy", "deepcopy"])
def test_copy_refuses_every_segment(posix_factory, backend, how):
    if backend == "posix":
        seg = posix_factory()
        hint = "PosixSegment.attach(seg.name)"
    elif backend == "anonymous":
        seg = zdshm.AnonymousSegment(2, 64)
        hint = "AnonymousSegment.attach_fd(seg.fileno())"
    else:
        seg = zdshm.MemorySegment(2, 64)
        hint = "pass the object itself"
    try:
        with pytest.raises(TypeError, match="cannot copy") as ei:
            how(seg)
        assert hint in str(ei.value)
    finally:
        seg.close()


# --- Real processes -------------------------------------------------------

@pytest.mark.crossproc
@pytest.mark.parametrize("method", ["spawn", "forkserver"])
def test_child_process_receives_segments(posix_factory, method):
    ctx = mp.get_context(method)
    to_child = posix_factory(slot_count=4, slot_capacity=64)
    to_parent = posix_factory(slot_count=4, slot_capacity=64)
    back = to_parent.reader()
    ready = ctx.Event()
    count = 5
    attached = to_parent.info()["live_attachments"]
    proc = ctx.Process(target=zdpy_handoff.echo_reversed,
                       args=(to_child, to_parent, count, ready))
    proc.start()
    try:
        assert ready.wait(JOIN), "the child did not attach"
        w = to_child.writer(timeout=10)
        for i in range(count):
            w.publish(b"frame %d" % i)
            s = back.take(timeout=10)
            assert s.tobytes() == (b"frame %d" % i)[::-1] + b"|%d" % proc.pid
            s.release()
        proc.join(JOIN)
        assert proc.exitcode == 0
    finally:
        if proc.is_alive():
            proc.kill()
            proc.join(JOIN)
    assert to_parent.info()["live_attachments"] == attached  # the child's went


@pytest.mark.crossproc
def test_process_pool_task_receives_a_segment(posix_factory):
    seg = posix_factory(slot_count=4, slot_capacity=64)
    r = seg.reader()
    with concurrent.futures.ProcessPoolExecutor(
            max_workers=1, mp_context=mp.get_context("spawn")) as pool:
        seen = pool.submit(zdpy_handoff.publish_task, seg, 3).result(timeout=JOIN)
    name, is_creator, slot_count, slot_capacity, pid = seen
    assert (name, is_creator, slot_count, slot_capacity) == (seg.name, False, 4, 64)
    assert pid != os.getpid()
    for i in range(3):
        s = r.take(timeout=1)
        assert s.tobytes() == b"task %d of %d" % (i, pid)
        s.release()


@pytest.mark.crossproc
def test_readme_workers_example_runs_verbatim(tmp_path):
    import pathlib
    import re
    import subprocess
    import sys

    from zdpy_support import shm_listing

    text = (pathlib.Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = text[text.index("\n## Passing segments to workers\n"):]
    section = section[:section.index("\n## ", 1)]
    block = re.findall(r"```python\n(.*?)```", section, flags=re.S)[0]
    name = unique_name("workers")
    assert block.count('"frames"') == 1
    script = tmp_path / "workers.py"     # spawn imports __main__ from a file
    script.write_text(block.replace('"frames"', repr(name)))
    proc = subprocess.run([sys.executable, str(script)],
                          capture_output=True, text=True, timeout=JOIN)
    left = name in shm_listing()
    if left:
        zdshm.unlink(name)
    assert proc.returncode == 0, proc.stderr
    frames = str([b"frame 0", b"frame 1", b"frame 2"])
    assert proc.stdout.splitlines() == [frames, frames]
    assert not left
