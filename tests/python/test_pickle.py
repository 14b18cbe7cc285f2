"""No zdshm object pickles, under any protocol: each refuses with a
TypeError that names the object and what to pass instead."""
from __future__ import annotations

import copy
import pickle

import pytest

import zdshm

PROTOCOLS = range(pickle.HIGHEST_PROTOCOL + 1)


def _objects(seg):
    w, r = seg.writer(), seg.reader()
    w.publish(b"x")
    sample = r.take(timeout=1)
    loan = w.loan()
    return {"segment": seg, "reader": r, "writer": w, "loan": loan, "sample": sample}


ADVICE = {
    "segment": "PosixSegment.attach(name)",
    "reader": "PosixSegment.attach(name).reader()",
    "writer": "PosixSegment.attach(name).writer()",
    "loan": "commit it here",
    "sample": "sample.tobytes()",
}


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_every_protocol_refuses(make_segment, protocol):
    seg = make_segment()
    objects = _objects(seg)
    for kind, obj in objects.items():
        with pytest.raises(TypeError) as ei:
            pickle.dumps(obj, protocol=protocol)
        msg = str(ei.value)
        assert type(obj).__name__ in msg, msg
        assert ADVICE[kind] in msg, msg
        if seg.backend == "memory" and kind == "segment":
            assert "lives in one process only" in msg
    with pytest.raises(TypeError):
        copy.copy(seg)
    objects["loan"].discard()
    objects["sample"].release()
