"""Per-message cost of the numpy conveniences against the bare calls.

Two ratios, each of two figures measured in the same process on the memory
backend (interleaved rounds, best of each):

  loan_array:  ``with w.loan_array((4, 4), np.float32) as a: a[...] = 1``
               (commit on exit)  /  ``l = w.loan(64); l.commit(64)``
  asarray:     ``np.asarray(r.take()).sum(); release``  /  ``take(); release``

Usage: python benchmarks/highlevel_cost.py [--rounds N] [--number N]
"""
from __future__ import annotations

import argparse
import timeit

import numpy as np

import zdshm


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--number", type=int, default=20000)
    args = ap.parse_args()

    seg = zdshm.MemorySegment(slot_count=128, slot_capacity=4096)
    w = seg.writer(overflow="reclaim")
    r = seg.reader()

    def bare_loan() -> None:
        loan = w.loan(64)
        loan.commit(64)

    def loan_array() -> None:
        with w.loan_array((4, 4), np.float32) as a:
            a[...] = 1

    def bare_take() -> None:
        s = r.take()
        s.release()

    def take_asarray() -> None:
        s = r.take()
        a = np.asarray(s)
        del a
        s.release()

    # Readers' cases: one sample (4x4 float32, with its meta) per take.
    def fill() -> None:
        w.publish(np.ones((4, 4), np.float32))

    cases = {"bare loan+commit": (bare_loan, None),
             "loan_array+commit": (loan_array, None),
             "bare take+release": (bare_take, fill),
             "asarray take+release": (take_asarray, fill)}
    best = {name: float("inf") for name in cases}
    for _ in range(args.rounds):
        for name, (fn, setup) in cases.items():
            if setup is None:
                t = timeit.timeit(fn, number=args.number)
            else:
                # publish outside the timed part: time take+release only
                total = 0.0
                for _ in range(args.number // 100):
                    for _ in range(100):    # 100 unread samples, 128 slots
                        setup()
                    total += timeit.timeit(fn, number=100)
                t = total
            best[name] = min(best[name], t / args.number)
        while r.try_take() is not None:
            pass
    for name, t in best.items():
        print(f"{name:24s} {t * 1e9:8.0f} ns")
    print(f"loan_array / bare loan   {best['loan_array+commit'] / best['bare loan+commit']:8.2f}x"
          "  (target <= 3)")
    print(f"asarray / bare take      {best['asarray take+release'] / best['bare take+release']:8.2f}x"
          "  (target <= 2)")
    r.close()
    seg.close()


if __name__ == "__main__":
    main()
