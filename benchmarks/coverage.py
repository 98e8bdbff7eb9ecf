"""The zoo coverage matrix: every zoo model x every registered target, written to docs/coverage.md.

Run: ``make coverage`` (or ``.venv/bin/python benchmarks/coverage.py [-o docs/coverage.md]
[--models a,b] [--targets tflite:fp32,onnx:int8] [--json results.json]``).

Trained zoo models are cached (``$EDGEKIT_CACHE`` or ``~/.cache/edgekit``), so a second run only
converts. The full matrix is ~12 models x 19 targets; CoreML and the unrolled recurrent models are
the slow cells.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

# The matrix and the report live in the repository's tools/ (not in the wheel): run from any folder.
REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-o", "--out", default="docs/coverage.md", help="Markdown file to write.")
    parser.add_argument("--models", help="Comma list of zoo names (default: the whole zoo).")
    parser.add_argument("--targets", help="Comma list of format:precision (default: every registered target).")
    parser.add_argument("--eval-limit", type=int, default=200, help="Validation samples per model.")
    parser.add_argument("--calib-limit", type=int, default=100, help="Calibration samples for int8 targets.")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1),
                        help="Models converted at once, one process each (default: 2, or 1 on one core).")
    parser.add_argument("--json", dest="json_path", help="Also write every cell as JSON here.")
    parser.add_argument("-q", "--quiet", action="store_true", help="No progress lines.")
    args = parser.parse_args(argv)

    from tools.coverage import run
    from tools.coverage_report import render

    t0 = time.perf_counter()

    def say(msg: str) -> None:
        if not args.quiet:
            print(f"[{time.perf_counter() - t0:7.1f}s] {msg}", file=sys.stderr, flush=True)

    result = run(args.models.split(",") if args.models else None, args.targets.split(",") if args.targets else None,
                 eval_limit=args.eval_limit, calib_limit=args.calib_limit, seed=args.seed, progress=say,
                 workers=args.workers)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render(result))
    if args.json_path:
        Path(args.json_path).write_text(json.dumps(result.to_dict(), indent=2))
    counts = result.counts()
    print(f"wrote {out}: {len(result.cells)} cells, " + ", ".join(f"{k} {v}" for k, v in counts.items())
          + f" ({time.perf_counter() - t0:.0f} s)")
    print("seconds per model: " + ", ".join(f"{m} {s:.0f}" for m, s in result.seconds.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
