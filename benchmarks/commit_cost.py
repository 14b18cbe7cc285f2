"""Commit cost of one build, to compare two builds side by side.

Prints the best of 5 rounds of ns per loan + commit (64 B, posix segment,
no reader) and per publish + try_take + release (one reader).  Run it
alternately with the interpreters of two installs, e.g. the current tree and
main, to see what a change costs a commit:

    python benchmarks/commit_cost.py <label>
"""
import os, sys, time, zdshm
N = 200_000
name = f"aio-cc-{os.getpid()}"
seg = zdshm.PosixSegment.create(name, slot_count=4, slot_capacity=64)
seg.unlink()
w = seg.writer(overflow="fail")
pc = time.perf_counter_ns
loan = w.loan
best_lc = best_pt = 1e9
for _ in range(5):
    t = pc()
    for _ in range(N):
        loan().commit(64)
    best_lc = min(best_lc, (pc() - t) / N)
r = seg.reader()
pub, take, msg = w.publish, r.try_take, b"x" * 64
for _ in range(5):
    t = pc()
    for _ in range(N):
        pub(msg); take().release()
    best_pt = min(best_pt, (pc() - t) / N)
print(f"{sys.argv[1]} loan+commit {best_lc:.1f} ns  publish+take+release {best_pt:.1f} ns")
r.close(); seg.close()
