"""A reader more than a ring's length behind, past a sample still held.

Reader A keeps a sample (its view pins the slot) while a reclaiming writer
publishes more than two rings of later samples through the other slots, so
the held sample's ring entry is taken over again and again.  Reader B, which
has not read the held sample, must still receive it first, in sn order, as
the reference model delivers it: it is in its slot and nothing recycled it.
Every step runs on the segment and on zdshm.testing's model in lockstep and
compares what each take returns, the reader statistics and the slots.
"""
from __future__ import annotations

from zdshm.testing import SegmentModel


class Pair:
    """The segment and the model, driven alike."""

    def __init__(self, seg, model):
        self.seg, self.model = seg, model

    def reader(self, **kw):
        return self.seg.reader(**kw), self.model.reader(**kw)

    def writer(self, **kw):
        return self.seg.writer(**kw), self.model.writer(**kw)


def publish(w, payload: bytes) -> int:
    real, mod = w
    sn = real.publish(payload)
    assert mod.publish(payload) == sn
    return sn


def take(r):
    """One take of both; returns (real, model) samples, equal or both None."""
    real, mod = r[0].try_take(), r[1].try_take()
    assert (None if real is None else real.sn) == (None if mod is None else mod.sn)
    if real is not None:
        assert real.tobytes() == mod.tobytes()
    return real, mod


def release(pair_of_samples):
    for s in pair_of_samples:
        s.release()


def take_sn(r) -> int | None:
    s = take(r)
    sn = None if s[0] is None else s[0].sn
    if s[0] is not None:
        release(s)
    return sn


def same_stats(r) -> dict:
    real = r[0].stats()
    mod = r[1].stats()
    for k in ("taken", "dropped", "skipped", "last_sn", "lag"):
        assert real[k] == mod[k], (k, real, mod)
    return real


def same_slots(p: Pair) -> None:
    for row, ms in zip(p.seg.slots(), p.model.slots):
        assert row["state"] == ms.state
        if row["state"] == "committed":
            read_by = tuple(i for i in range(64) if ms.read_mask >> i & 1)
            assert (row["sn"], row["read_by"]) == (ms.sn, read_by), row


def held_by_a(p: Pair, slot_count: int, held: int):
    """Readers a, b; a reclaiming writer; sn 0 .. held-1 read by both, the
    next `held` samples taken and kept by a only (b has not read them)."""
    a, b = p.reader(), p.reader()
    w = p.writer(overflow="reclaim")
    sn = 0
    for _ in range(slot_count - held):
        publish(w, bytes([sn]))
        release(take(a))
        release(take(b))
        sn += 1
    kept = []
    for _ in range(held):
        publish(w, bytes([sn]))
        s = take(a)
        assert s[0].sn == sn
        kept.append(s)
        sn += 1
    return a, b, w, kept, sn


def test_a_held_sample_two_rings_back_is_delivered_first(make_segment):
    p = Pair(make_segment(2, 8), SegmentModel(2, 8))
    ring = p.seg.info()["ring_size"]
    a, b, w, kept, sn = held_by_a(p, 2, 1)
    assert [k[0].sn for k in kept] == [1]
    held_sn = kept[0][0].sn
    last = sn + 3 * ring                 # more than two rings of later samples
    for x in range(sn, last):
        publish(w, bytes([x % 256]))
    # The held sample first (it was lost here: b got last - 1 instead) ...
    assert take_sn(b) == held_sn
    stats = same_stats(b)
    assert stats["dropped"] == last - 1 - sn    # reclaimed from b, counted
    same_slots(p)
    row = p.seg.slots()[kept[0][0].slot]
    assert row["sn"] == held_sn and b[0].index in row["read_by"]
    # ... then the newest; what was reclaimed stays counted, nothing twice.
    assert take_sn(b) == last - 1
    assert take_sn(b) is None
    assert p.seg.next_unread(b[0].index) is p.model.next_unread(b[1].index) is None
    assert same_stats(b)["dropped"] == last - 1 - sn
    release(kept[0])
    # Read by both and released: the writer reuses it with no drop for b.
    publish(w, b"next")
    assert same_stats(b)["dropped"] == last - 1 - sn
    assert take_sn(b) == last
    same_slots(p)


def test_a_held_sample_released_after_the_far_take(make_segment):
    """b takes the held sample while a still holds it; a releases later: the
    slot is free for writers at once (read by both, pinned by nobody)."""
    p = Pair(make_segment(2, 8), SegmentModel(2, 8))
    ring = p.seg.info()["ring_size"]
    a, b, w, kept, sn = held_by_a(p, 2, 1)
    slot = kept[0][0].slot
    for x in range(sn, sn + 2 * ring + 3):
        publish(w, bytes([x % 256]))
    s = take(b)
    assert s[0].sn == kept[0][0].sn
    release(kept[0])
    assert p.seg.slots()[slot]["pinned_by_readers"] == (b[0].index,)
    release(s)
    same_slots(p)
    assert p.seg.slots()[slot]["pinned_by_readers"] == ()
    before = same_stats(b)["dropped"]
    # a reads along; with no reclaim, a failing writer needs that slot too.
    fw = p.writer(overflow="fail")
    while take_sn(b) is not None:
        pass
    while take_sn(a) is not None:
        pass
    for x in range(4):
        publish(fw, bytes([x]))
        assert take_sn(a) is not None
        assert take_sn(b) is not None
    assert same_stats(b)["dropped"] == before
    same_slots(p)
    assert [row["slot"] for row in p.seg.slots() if row["pinned_by_readers"]] == []


def test_several_held_samples_come_in_sn_order(make_segment):
    p = Pair(make_segment(4, 8), SegmentModel(4, 8))
    ring = p.seg.info()["ring_size"]
    a, b, w, kept, sn = held_by_a(p, 4, 3)
    held = [k[0].sn for k in kept]
    for x in range(sn, sn + 3 * ring + 1):
        publish(w, bytes([x % 256]))
    got = [take_sn(b) for _ in range(len(held))]
    assert got == held
    same_stats(b)
    newest = sn + 3 * ring
    assert take_sn(b) == newest
    assert take_sn(b) is None
    same_stats(b)
    same_slots(p)
    for k in kept:
        release(k)
    same_slots(p)


def test_a_latest_reader_skips_the_held_sample_and_counts_it(make_segment):
    p = Pair(make_segment(2, 8), SegmentModel(2, 8))
    ring = p.seg.info()["ring_size"]
    a = p.reader()
    c = p.reader(latest=True)
    w = p.writer(overflow="reclaim")
    publish(w, b"\x00")
    kept = take(a)
    for x in range(1, 3 * ring):
        publish(w, bytes([x]))
    assert take_sn(c) == 3 * ring - 1
    stats = same_stats(c)
    assert stats["skipped"] == 1            # the held sample, counted once
    same_slots(p)
    release(kept)
    same_slots(p)


def test_a_join_last_reader_behind_a_held_sample(make_segment):
    """A reader joining with join_last=2 while the held sample is far out of
    the ring's reach: the two newest held samples, in sn order."""
    p = Pair(make_segment(2, 8), SegmentModel(2, 8))
    ring = p.seg.info()["ring_size"]
    a, b, w, kept, sn = held_by_a(p, 2, 1)
    for x in range(sn, sn + 3 * ring):
        publish(w, bytes([x % 256]))
    j = p.reader(join_last=2)
    assert take_sn(j) == kept[0][0].sn
    assert take_sn(j) == sn + 3 * ring - 1
    assert take_sn(j) is None
    same_stats(j)
    assert take_sn(b) == kept[0][0].sn
    same_stats(b)
    same_slots(p)
    release(kept[0])


def test_a_held_small_class_sample_while_the_large_class_cycles(make_segment):
    classes = [(1, 8), (2, 64)]
    p = Pair(make_segment(None, None, classes=classes), SegmentModel(classes=classes))
    ring = p.seg.info()["ring_size"]
    a, b = p.reader(), p.reader()
    w = p.writer(overflow="reclaim")
    small = publish(w, b"s")
    kept = take(a)
    assert kept[0].sn == small and kept[0].slot == 0
    big = [publish(w, bytes([x % 256]) * 40) for x in range(3 * ring)]
    assert take_sn(b) == small
    assert [take_sn(b), take_sn(b), take_sn(b)] == [big[-2], big[-1], None]
    same_stats(b)
    same_slots(p)
    release(kept)
    assert [take_sn(a), take_sn(a)] == big[-2:]
    same_stats(a)


def test_the_model_agrees_on_the_far_take(make_segment):
    """The same story in plain form: what b is given and counted equals the
    model's, take by take, for a range of later-sample counts around two
    rings' length."""
    ring = make_segment(2, 8).info()["ring_size"]
    for later in range(ring - 1, 3 * ring + 2):
        p = Pair(make_segment(2, 8), SegmentModel(2, 8))
        a, b, w, kept, sn = held_by_a(p, 2, 1)
        for x in range(sn, sn + later):
            publish(w, bytes([x % 256]))
        got = []
        while (x := take_sn(b)) is not None:
            got.append(x)
            same_stats(b)
        assert got == [kept[0][0].sn, sn + later - 1], later
        release(kept[0])
        same_slots(p)
        p.seg.close()
