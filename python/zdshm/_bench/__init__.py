"""The zdshm benchmark suite (``python -m zdshm bench``).

Everything the benchmark needs ships in the wheel: the scenarios, the peers,
the C floors (compiled at run time with the system ``cc``), the report and the
plots.  ``zdshm.bench.main`` is the entry point; ``benchmarks/README.md`` in
the source tree documents the scenarios and the JSON schema.

Modules:
  common    process pairs with watchdogs, statistics, rusage, environment
  floors    the C floors (cache-line and futex ping-pong, memcpy, page touch)
  pingpong  S1: round trip between two processes, zdshm and every peer
  stream    S2 (1 writer -> 1 reader throughput) and S3 (fan-out)
  local     S4/S6 (API cost in one process, both backends) and S5 (setup)
  peers     which peers are installed, and their versions
  scaling   cost vs slot count, futex calls per message, writer rate vs readers
  report    the performance targets (core and scaling), the printed table, Markdown, plots
  runner    the order of a run, quick and full budgets
"""
