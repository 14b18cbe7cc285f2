"""Child processes of test_multi.py (importable by "spawn").

Sample i of the stream is {"image": uint8 (H, W, 3), "label": <i8 (2,),
"score": 0-d <f4}: the image is (arange + i) % 251, the label (i, 3 i), the
score i / 2.  Writer and reader derive them from i alone.
"""
from __future__ import annotations

import numpy as np

import zdshm

H, W = 24, 32


def sample(i: int) -> dict[str, np.ndarray]:
    image = ((np.arange(H * W * 3, dtype=np.int64) + i) % 251).astype(np.uint8)
    return {"image": image.reshape(H, W, 3),
            "label": np.array([i, 3 * i], dtype="<i8"),
            "score": np.array(i / 2, dtype="<f4")}


def write_stream(name: str, count: int, results) -> None:
    seg = zdshm.PosixSegment.attach(name)
    try:
        w = seg.writer(overflow="block", timeout=60)
        w.wait_for_readers(1, timeout=60)
        sns = []
        for i in range(count):
            if i % 2:
                sns.append(w.publish(sample(i)))
            else:
                want = sample(i)
                with w.loan_arrays({k: (v.shape, v.dtype) for k, v in want.items()}) as arrs:
                    for k, v in want.items():
                        arrs[k][...] = v
        results.put({"writer": "done", "published": count})
    finally:
        seg.close()


def read_stream(name: str, count: int, ready, results) -> None:
    seg = zdshm.PosixSegment.attach(name)
    report = {"count": 0, "bad_keys": 0, "bad_content": 0, "bad_sn": 0,
              "bad_align": 0, "bad_meta": 0}
    try:
        r = seg.reader()
        ready.set()
        last = -1
        for i in range(count):
            with r.take(timeout=60) as s:
                if s.sn != last + 1:
                    report["bad_sn"] += 1
                last = s.sn
                if s.keys() != ("image", "label", "score"):
                    report["bad_keys"] += 1
                    continue
                want = sample(i)
                arrays = s.arrays()
                for k, v in want.items():
                    a = arrays[k]
                    if a.dtype != v.dtype or a.shape != v.shape or a.flags.writeable:
                        report["bad_meta"] += 1
                    elif not np.array_equal(a, v):
                        report["bad_content"] += 1
                    if a.__array_interface__["data"][0] % 64:
                        report["bad_align"] += 1
                del arrays, a
            report["count"] += 1
        r.close()
    finally:
        results.put(report)
        seg.close()
