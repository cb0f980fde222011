"""The benchmark harness keeps working: ``bench/run.py --smoke`` against streamchat.

The real benchmark (``make bench``, docs/benchmarks.md) takes minutes and stays
out of the test run; the smoke mode drives every section with tiny numbers
through the same code: a real server process, the Node load generator (its
``npm ci`` runs on first use), the report. It needs Node 20+ and npm.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import IN_CI

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.timeout(180)
def test_bench_smoke(tmp_path: Path) -> None:
    if shutil.which("node") is None or shutil.which("npm") is None:
        reason = "the benchmark's load generator needs node and npm (Node 20+)"
        if IN_CI:
            pytest.fail(reason, pytrace=False)
        pytest.skip(reason)
    out = tmp_path / "latest.json"
    run = subprocess.run(
        [sys.executable, "bench/run.py", "--smoke", "--servers", "streamchat", "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=170,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-5000:]
    report = json.loads(out.read_text())
    sections = report["sections"]
    assert report["errors"] == []

    capacity = sections["capacity"]["streamchat"]
    assert capacity["capacity_deliveries_per_s"] > 0
    assert all(step["lost"] == 0 for step in capacity["steps"] if step["passed"])

    memory = sections["memory"]["streamchat"]
    assert memory["connected"] == memory["connections"]

    rooms = sections["rooms"]["sqlite"]
    assert rooms["lost"] == 0
    assert rooms["acked"] == rooms["sent"] == rooms["persisted"]

    connrate = sections["connrate"]["streamchat"]
    assert connrate["succeeded"] == connrate["connections"]

    slow = sections["slow"]["streamchat"]
    assert slow["baseline"]["lost"] == 0
    assert slow["stalled"]["lost"] == 0
    assert out.with_suffix(".md").read_text().startswith("Run on ")
