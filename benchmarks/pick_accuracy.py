"""Is ``edgekit pick``'s short measurement right? Check its choice against a long interleaved one.

1. Runs ``edgekit pick FOLDER`` twice in fresh processes with an empty cache: the first measures
   (default budget), the second must come from the cache. Both wall times are printed.
2. Times every candidate the pick timed again, for ``--seconds`` (default 60) in interleaved rounds
   (every candidate ``--slot`` seconds per round, order rotating, one untimed call first), with a
   plain loop written here rather than :mod:`edgekit.runtime.pick`'s, so the check is independent.
3. Passes when the chosen artifact's long-run p50 is within ``--tolerance`` (5 %) of the fastest
   long-run p50.

Run: ``.venv/bin/python benchmarks/pick_accuracy.py /tmp/mnv2-out [--seconds 60] [--batch 1] [--threads N]``
(build the folder with ``benchmarks/mobilenet_folder.py -o /tmp/mnv2-out``). Exit 0 when within, 1 when not.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

# `edgekit pick` as the lead registers it, or the command itself in a one-command group until then.
_CLI = """
import sys, click
from edgekit.cli.common import Group
try:
    from edgekit.cli import main
    assert "pick" in main.commands
except (ImportError, AssertionError):
    from edgekit.cli.pick import pick
    @click.group(cls=Group)
    def main(): pass
    main.add_command(pick)
main(sys.argv[1:], prog_name="edgekit")
"""


def run_cli(args: list[str], env: dict[str, str]) -> tuple[float, str]:
    """Run ``edgekit ARGS`` in a fresh process; (wall seconds, output)."""
    t = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", _CLI, *args], capture_output=True, text=True, env=env, timeout=600)
    wall = time.perf_counter() - t
    if proc.returncode != 0:
        raise SystemExit(f"edgekit {' '.join(args)} failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}")
    return wall, proc.stdout + proc.stderr


def long_run(folder: str, targets: list[str], seconds: float, slot: float, batch: int, threads: int | None
             ) -> dict[str, dict[str, float]]:
    """Per-target p50 (median of per-round medians), all-call p50 and call count over ``seconds``."""
    import edgekit.runtime as rt
    from edgekit.runtime.pick import float_feeds

    sessions = {t: rt.load(folder, target=t, num_threads=threads) for t in targets}
    feeds = {}
    for t, s in sessions.items():
        f = float_feeds(s, batch)
        feeds[t] = f[0] if len(f) == 1 else f
        for _ in range(5):
            s.run(feeds[t])
    per_round: dict[str, list[float]] = {t: [] for t in targets}
    calls: dict[str, list[float]] = {t: [] for t in targets}
    t_end = time.perf_counter() + seconds
    r = 0
    while time.perf_counter() < t_end:
        for t in targets[r % len(targets):] + targets[:r % len(targets)]:
            s, x = sessions[t], feeds[t]
            s.run(x)  # untimed: the previous candidate's thread pool is not this one's bill
            times, t_slot = [], time.perf_counter()
            while not times or time.perf_counter() - t_slot < slot:
                t0 = time.perf_counter()
                s.run(x)
                times.append((time.perf_counter() - t0) * 1e3)
            per_round[t].append(float(np.median(times)))
            calls[t] += times
        r += 1
    return {t: {"p50_ms": float(np.median(per_round[t])), "all_p50_ms": float(np.median(calls[t])),
                "calls": len(calls[t]), "rounds": len(per_round[t])} for t in targets}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folder")
    ap.add_argument("--seconds", type=float, default=60.0, help="Length of the long interleaved measurement.")
    ap.add_argument("--slot", type=float, default=0.25, help="Seconds per candidate per round in the long run.")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--threads", type=int)
    ap.add_argument("--budget", type=float, help="edgekit pick --budget (default: its own).")
    ap.add_argument("--tolerance", type=float, default=0.05)
    args = ap.parse_args()

    cache = tempfile.mkdtemp(prefix="edgekit-pick-accuracy-")
    env = {**os.environ, "EDGEKIT_CACHE": cache}
    flags = ["--batch", str(args.batch)] + (["--threads", str(args.threads)] if args.threads else []) \
        + (["--budget", str(args.budget)] if args.budget else [])
    wall1, out1 = run_cli(["pick", args.folder, *flags], env)
    wall2, out2 = run_cli(["pick", args.folder, *flags], env)
    _, doc_text = run_cli(["pick", args.folder, *flags, "--json"], env)
    doc = json.loads(doc_text)
    print(f"$ edgekit pick {args.folder} {' '.join(flags)}   # 1st call: {wall1:.2f} s wall\n{out1}")
    print(f"$ edgekit pick {args.folder} {' '.join(flags)}   # 2nd call: {wall2:.2f} s wall\n{out2}")
    if "from cache" not in out2:
        print("FAIL: the second call did not use the cache")
        return 1
    targets = [t["target"] for t in doc["timings"]]
    if len(targets) < 2:
        print(f"only {targets} timed: nothing to check")
        return 0
    print(f"long interleaved measurement: {args.seconds:g} s over {', '.join(targets)} (slot {args.slot:g} s)")
    long = long_run(args.folder, targets, args.seconds, args.slot, args.batch, args.threads)
    fastest = min(long, key=lambda t: long[t]["p50_ms"])
    picked = {t["target"]: t["p50_ms"] for t in doc["timings"]}
    print(f"{'target':<30} {'pick p50 ms':>12} {'long p50 ms':>12} {'all-call p50':>13} {'calls':>6} {'vs fastest':>11}")
    for t in targets:
        mark = "→ " if t == doc["chosen"] else "  "
        print(f"{mark + t:<30} {picked[t]:>12.3f} {long[t]['p50_ms']:>12.3f} {long[t]['all_p50_ms']:>13.3f} "
              f"{long[t]['calls']:>6} {long[t]['p50_ms'] / long[fastest]['p50_ms']:>10.3f}×")
    gap = long[doc["chosen"]]["p50_ms"] / long[fastest]["p50_ms"] - 1
    ok = gap <= args.tolerance
    print(f"{'PASS' if ok else 'FAIL'}: pick chose {doc['chosen']}; the long run's fastest is {fastest}; "
          f"the choice is {100 * gap:.1f} % slower than the fastest (tolerance {100 * args.tolerance:g} %)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
