"""The attack replay of issue #12 (benchmarks/attack.py): every row ends in a 4xx or a one-line error,
the server's RSS comes back within 10 % of its baseline, and it stays alive.

Slow (~1 minute: a fresh ``edgekit serve`` per row), loopback only.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from deploy_helpers import REPO


@pytest.mark.slow
def test_every_attack_row_is_refused_cleanly_and_the_server_recovers(digits_out, tmp_path):
    out, _ = digits_out
    result = tmp_path / "attack.json"
    p = subprocess.run([sys.executable, str(REPO / "benchmarks" / "attack.py"), "--out", str(out), "--json", str(result)],
                       capture_output=True, text=True, timeout=900, cwd=REPO)
    rows = json.loads(result.read_text())
    assert len(rows) >= 23, p.stdout[-3000:] + p.stderr[-3000:]
    failed = [f"{r['name']}: {r['status']} ({'; '.join(r['reasons'])})" for r in rows if not r["passed"]]
    assert not failed, "\n".join(failed)
    assert p.returncode == 0, p.stdout[-3000:]
