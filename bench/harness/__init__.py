"""The machinery of ``bench/run.py``: servers, accounts, the load generator and the sections.

- :mod:`harness.config` — every number a run uses (full and smoke sizes).
- :mod:`harness.procfs` — CPU and memory of a process, and of the machine, from ``/proc``.
- :mod:`harness.install` — installs the peers and the load generator into bench-local folders.
- :mod:`harness.accounts` — users, sessions and rooms made with streamchat's own stores.
- :mod:`harness.servers` — starting and stopping streamchat and its peers.
- :mod:`harness.loadgen` — driving the Node load generator.
- :mod:`harness.capacity`, :mod:`harness.memory`, :mod:`harness.rooms`,
  :mod:`harness.connrate`, :mod:`harness.slow` — one module per section of the report.
- :mod:`harness.report` — the printed tables, ``latest.json`` and ``latest.md``.
"""
