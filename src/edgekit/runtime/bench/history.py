"""Local results store (SQLite): every bench run is appended, so a model's numbers can be read back
across runs and devices with ``edgekit bench --history``.

Default location: ``$EDGEKIT_RESULTS`` or ``~/.local/share/edgekit/results.sqlite``. One row per
result; the full result and device fingerprint are kept as JSON beside the columns we query.

Example:
    >>> import tempfile, os
    >>> store = ResultStore(os.path.join(tempfile.mkdtemp(), "r.sqlite"))
    >>> store.append([{"target": "tflite:int8", "latency_ms": {"p50": 1.5}, "status": "ok"}],
    ...              device={"cpu": "x", "cores": 2, "machine": "m", "board": None}, model="digits", model_key="k1")
    1
    >>> [(r["target"], r["p50_ms"]) for r in store.history("k1")]
    [('tflite:int8', 1.5)]
"""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path
from typing import Any, Mapping, Sequence

from edgekit.errors import InputError
from edgekit.runtime.device import fingerprint

_SCHEMA = """
CREATE TABLE IF NOT EXISTS results (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    created TEXT NOT NULL,
    model TEXT NOT NULL,
    model_key TEXT NOT NULL,
    target TEXT NOT NULL,
    device TEXT NOT NULL,
    engine TEXT,
    engine_version TEXT,
    batch_size INTEGER,
    num_threads INTEGER,
    concurrency INTEGER,
    status TEXT,
    p50_ms REAL, p90_ms REAL, p99_ms REAL, mean_ms REAL,
    throughput REAL, accuracy REAL, size_bytes INTEGER, peak_rss_mb REAL, cold_start_ms REAL,
    result_json TEXT NOT NULL,
    device_json TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS results_model ON results (model_key, created);
"""


def default_path() -> Path:
    return Path(os.environ.get("EDGEKIT_RESULTS") or Path.home() / ".local" / "share" / "edgekit" / "results.sqlite")


class ResultStore:
    """An append-only table of bench results in one SQLite file."""

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        self.path = Path(path) if path else default_path()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # SQLite creates its file 0644 whatever the umask; created here first, it has the mode a
            # plain write gives (0664 under umask 002, 0600 under 077), and its journals follow it.
            self.path.touch(exist_ok=True)
            with self._connect() as db:
                db.executescript(_SCHEMA)
                # Stores written before throughput mode lack the column; their rows were all one stream.
                if "concurrency" not in {row[1] for row in db.execute("PRAGMA table_info(results)")}:
                    db.execute("ALTER TABLE results ADD COLUMN concurrency INTEGER DEFAULT 1")
        except (OSError, sqlite3.Error) as exc:
            raise InputError(f"cannot open results store {self.path}: {exc}") from None

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=10)
        db.row_factory = sqlite3.Row
        return db

    def append(self, results: Sequence[Mapping[str, Any]], *, device: Mapping[str, Any], model: str, model_key: str,
               created: str = "") -> int:
        """Store results of one run; returns how many rows were written."""
        import datetime as _dt

        created = created or _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
        fp = fingerprint(dict(device))
        rows = []
        for r in results:
            lat = r.get("latency_ms") or {}
            rows.append((created, model, model_key, r.get("target", "?"), fp, r.get("engine"), r.get("engine_version"),
                         r.get("batch_size"), r.get("num_threads"), r.get("concurrency", 1), r.get("status"), lat.get("p50"), lat.get("p90"),
                         lat.get("p99"), lat.get("mean"), r.get("throughput"), r.get("accuracy"), r.get("size_bytes"),
                         r.get("peak_rss_mb"), r.get("cold_start_ms"), json.dumps(dict(r), default=str),
                         json.dumps(dict(device), default=str)))
        try:
            with self._connect() as db:
                db.executemany(
                    "INSERT INTO results (created, model, model_key, target, device, engine, engine_version, batch_size,"
                    " num_threads, concurrency, status, p50_ms, p90_ms, p99_ms, mean_ms, throughput, accuracy, size_bytes,"
                    " peak_rss_mb, cold_start_ms, result_json, device_json)"
                    " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)", rows)
        except sqlite3.Error as exc:
            raise InputError(f"cannot write results store {self.path}: {exc}") from None
        return len(rows)

    def history(self, model_key: str | None = None, limit: int = 200) -> list[dict[str, Any]]:
        """Rows for one model (all models if ``None``), newest first."""
        q = "SELECT * FROM results"
        args: tuple[Any, ...] = ()
        if model_key:
            q += " WHERE model_key = ?"
            args = (model_key,)
        q += " ORDER BY created DESC, id DESC LIMIT ?"
        with self._connect() as db:
            return [dict(row) for row in db.execute(q, (*args, limit))]


def model_key_for(path: str | os.PathLike[str]) -> tuple[str, str]:
    """(display name, key) identifying the model behind ``path``: the manifest's source hash, or the file's."""
    from edgekit.manifest import MANIFEST_NAME, Manifest, sha256_file

    p = Path(path)
    if p.is_dir() or p.name == MANIFEST_NAME:
        m = Manifest.load(p)
        src = m.source
        return str(src.get("name") or p), str(src.get("sha256") or f"{src.get('name')}@{src.get('zoo') or p.resolve()}")
    return p.name, sha256_file(p) if p.exists() else str(p)
