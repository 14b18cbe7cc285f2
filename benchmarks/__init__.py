"""The zdshm benchmark suite: ``python -m benchmarks`` from the repository root.

It is project tooling, not part of the installed package: the scenarios,
the peers, the report and the plots are here, the C floors are in ``c/``
(built with CMake, ``-DZD_BUILD_BENCH=ON``).  ``__main__`` is the command
line; ``README.md`` documents the scenarios and the JSON schema.

Modules:
  common    process pairs with watchdogs, statistics, rusage, environment
  floors    builds and runs the C floors (cache-line and futex ping-pong,
            memcpy, page touch, the C core)
  pingpong  S1: round trip between two processes, zdshm and every peer
  stream    S2 (1 writer -> 1 reader throughput) and S3 (fan-out)
  local     S4/S6 (API cost in one process, both backends) and S5 (setup)
  peers     which peers are installed, and their versions
  scaling   cost vs slot count, futex calls per message, writer rate vs readers
  aio       asyncio round trips and the cost of an event-loop waiter
  classes   a mixed-size stream: size classes vs one class vs mp.Queue
  report    the performance targets (core and scaling), the printed table, Markdown, plots
  runner    the order of a run, quick and full budgets

``commit_cost.py`` and ``perf_breakdown.py`` are separate diagnostics.
"""
