"""The ``bench --report`` page: readable numbers, the trade-off chart with and without labels, the
Pareto front, the artifact ``load()`` picks, and the page as headless Chromium renders it.

Real folders (the session's digits artifacts, and one converted with unlabelled eval data), real
LiteRT timings, a real browser; no mocks.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edgekit.manifest import Manifest
from edgekit.runtime.bench import BenchConfig, bench_path, report
from edgekit.runtime.bench import units
from edgekit.runtime.bench.html_report import CSP, device_line, render_html, write_report
from edgekit.runtime.bench.svg import latency_svg, nice_ticks, tick_label
from edgekit.runtime.bench.tradeoff import ACCURACY, AGREEMENT, SNR, choose_metric, pareto_front
from edgekit.runtime.loader import choose_artifact

TARGETS = ["tflite:fp32", "tflite:dynamic", "tflite:int8", "tflite:fp16"]
SCIENTIFIC = re.compile(r"\d\.?\d*e[+-]\d")
CHROMIUM = shutil.which("chromium")
NO_CHROMIUM = "chromium not installed: apt-get install chromium (the .ci/run script installs it)"


# ---------------------------------------------------------------- numbers


def test_numbers_read_like_numbers():
    # The examples: 1.367e+04 KiB and 4.739e+04 inf/s.
    assert units.size(13_670 * 1024) == "13.3 MiB"
    assert units.size(14_051_000) == "13.4 MiB"
    assert units.rate(47_390.2) == "47,390 inf/s"
    assert units.ms(2.2391) == "2.24 ms"
    assert [units.size(n) for n in (0, 812, 1024, 173_440, 3 * 1024**3)] == ["0 B", "812 B", "1.00 KiB", "169 KiB",
                                                                               "3.00 GiB"]
    assert [units.ms(v) for v in (0.031249, 0.000312, 12.0, 1234.56)] == ["0.0312 ms", "0.000312 ms", "12.0 ms",
                                                                        "1,235 ms"]
    # rounding that gains a digit keeps three significant digits
    assert [units.sig(v) for v in (0.09996, 9.996, 999.7, -2.2391)] == ["0.100", "10.0", "1,000", "-2.24"]
    assert units.rate(8.456) == "8.46 inf/s" and units.percent(99.7214) == "99.72 %" and units.decibels(38.87) == "38.9 dB"
    assert units.ms(None) == units.size(None) == units.rate(None) == units.MISSING
    for v in (1e-7, 3.3e-5, 0.5, 7.0, 13_996.5, 4.739e4, 2.5e9):
        assert not SCIENTIFIC.search(units.sig(v)), units.sig(v)


def test_ticks_are_round():
    assert nice_ticks(0, 0.047) == [0.0, 0.01, 0.02, 0.03, 0.04, 0.05]
    assert [tick_label(t) for t in nice_ticks(99.2, 100.0)] == ["99.2", "99.4", "99.6", "99.8", "100"]
    assert tick_label(1000.0) == "1,000"


# ---------------------------------------------------------------- Pareto and the quality measure


def test_pareto_front_on_hand_made_points():
    pts = [(1.0, 90.0), (2.0, 95.0), (3.0, 95.0), (0.5, 80.0), (2.0, 85.0), (4.0, 99.0), (1.0, 90.0)]
    # (3, 95) is beaten by (2, 95); (2, 85) by (1, 90); equal points (1, 90) both stay.
    assert pareto_front(pts) == [True, True, False, True, False, True, True]
    assert pareto_front([(1.0, 1.0)]) == [True]
    assert pareto_front([]) == []
    # all equally good: only the fastest (and its ties) are worth having
    assert pareto_front([(0.04, 99.72), (0.037, 99.72), (0.037, 99.72), (0.09, 99.72)]) == [False, True, True, False]


def test_quality_measure_falls_back_without_labels():
    rows = [{"target": "a", "accuracy": 98.0}, {"target": "b", "accuracy": 97.0}]
    assert choose_metric(rows, {}) is ACCURACY
    unlabelled = [{"target": "a", "accuracy": None}, {"target": "b", "accuracy": None}]
    spread = {"a": {"top1_agreement": 1.0, "snr_db": 130.0}, "b": {"top1_agreement": 0.98, "snr_db": 35.0}}
    assert choose_metric(unlabelled, spread) is AGREEMENT
    flat = {"a": {"top1_agreement": 1.0, "snr_db": 130.0}, "b": {"top1_agreement": 1.0, "snr_db": 35.0}}
    m = choose_metric(unlabelled, flat)
    assert m.key == SNR.key and "100.00 %" in m.why  # agreement cannot separate them, SNR can
    assert choose_metric(unlabelled, {"a": {"snr_db": 130.0}, "b": {"snr_db": 35.0}}).key == "snr_db"
    assert choose_metric(unlabelled, {"a": {"snr_db": 130.0}}) is None  # b has nothing: no mixed chart
    assert choose_metric([], {}) is None


# ---------------------------------------------------------------- device line


def test_device_line_has_only_known_fields():
    line = device_line({"cpu": "AMD EPYC", "cores": 2, "machine": "x86_64", "board": None, "gpus": [], "l4t": None,
                        "system": "Linux", "python": "3.11.7", "cpu_flags": []})
    assert line == "AMD EPYC · 2 cores · x86_64 · Linux · Python 3.11.7"
    jetson = device_line({"cpu": "ARMv8 Processor rev 1 (v8l)", "cores": 6, "machine": "aarch64",
                          "board": "NVIDIA Jetson Orin Nano Developer Kit", "gpus": ["Orin (nvgpu)"], "l4t": "36.4.3",
                          "cpu_flags": ["asimd", "asimddp"]})
    assert jetson.startswith("NVIDIA Jetson Orin Nano Developer Kit · ARMv8")
    assert "L4T 36.4.3" in jetson and "GPUs: Orin (nvgpu)" in jetson and "ASIMD ASIMDDP" in jetson
    assert device_line({}) == ""
    page = render_html({"device": {"cpu": "x", "cores": 1, "board": None, "gpus": []}, "results": []})
    assert "board" not in page and "GPUs" not in page and " - " not in page and "None" not in page


# ---------------------------------------------------------------- real folders


@pytest.fixture(scope="module")
def labelled(digits_out):
    out, _ = digits_out
    config = BenchConfig(warmup=2, runs=30)
    manifest = Manifest.load(out)
    doc = report(bench_path(out, config), config, manifest=manifest)
    return doc, manifest, render_html(doc)


@pytest.fixture(scope="module")
def unlabelled(tmp_path_factory, digits_eval):
    """A user's own data without labels: convert validates with it and writes it as eval.npz."""
    from edgekit.api import convert

    root = tmp_path_factory.mktemp("unlabelled")
    np.savez(root / "mine.npz", x=digits_eval.inputs[0])  # inputs only: no 'y' key
    out = root / "out"
    convert({"model": "digits-cnn", "targets": ["tflite:fp32", "tflite:int8", "tflite:fp16"],
             "eval": str(root / "mine.npz")}, out, force=True)
    config = BenchConfig(warmup=2, runs=30)
    manifest = Manifest.load(out)
    doc = report(bench_path(out, config), config, manifest=manifest)
    return doc, manifest, render_html(doc)


def _points(page: str) -> dict[str, str]:
    """target -> 'pareto' | 'dominated' for every marker of the trade-off chart."""
    return dict((t, cls) for cls, t in re.findall(r'<g class="point (pareto|dominated)" data-target="([^"]+)"', page))


def test_document_names_the_chosen_artifact_and_its_reason(labelled):
    doc, manifest, _ = labelled
    artifact, why = choose_artifact(manifest, device=doc["device"])
    assert doc["chosen"] == {"target": artifact.target, "reason": why}
    assert doc["chosen"]["target"] in TARGETS and doc["chosen"]["reason"].startswith("best for this device")
    assert sorted(doc["validation"]) == sorted(TARGETS)
    for t in TARGETS:
        v = doc["validation"][t]
        assert v == {k: manifest.artifact(t).validation[k] for k in v}
        assert 0 < v["snr_db"] and 0.9 <= v["top1_agreement"] <= 1.0 and v["accuracy"] > 90
    assert doc["eval"]["labels"] is True and doc["model"] == "digits-cnn" and doc["schema"] == "edgekit.bench/1"
    assert json.loads(json.dumps(doc)) == doc
    # without a manifest the document is what it always was (additive schema)
    plain = report([], BenchConfig())
    assert not {"chosen", "validation", "eval", "model"} & set(plain)


def test_labelled_report_plots_accuracy_with_pareto_and_pick(labelled):
    doc, _, page = labelled
    chosen = doc["chosen"]["target"]
    assert 'id="tradeoff-chart"' in page and ">accuracy (%)<" in page
    points = _points(page)
    assert sorted(points) == sorted(TARGETS)
    ok = [r for r in doc["results"] if r["status"] == "ok"]
    assert len(ok) == 4
    expected = pareto_front([(r["latency_ms"]["p50"], r["accuracy"]) for r in ok])
    assert {r["target"] for r, f in zip(ok, expected) if f} == {t for t, c in points.items() if c == "pareto"}
    # the pick: one ring in the chart, a starred row in each table, and the reason in words
    assert page.count('class="chosen-ring"') == 1
    assert f"<strong>load() picks {chosen}</strong>" in page
    assert doc["chosen"]["reason"].replace("'", "&#x27;") in page
    assert page.count(f'<tr class="chosen"><td>★ {chosen}</td>') == 2
    assert f"{chosen}  ◎ load() picks" in page
    # latency distribution: one box per artifact, median and p99 in words
    assert page.count('class="box"') == 4 and page.count("median ") >= 4


def test_unlabelled_report_still_draws_the_tradeoff(unlabelled):
    doc, manifest, page = unlabelled
    assert doc["eval"]["labels"] is False
    assert all(r["accuracy"] is None for r in doc["results"])
    assert all(doc["validation"][a.target].get("accuracy") is None for a in manifest.artifacts)
    assert 'id="tradeoff-chart"' in page and ">accuracy (%)<" not in page
    agreement = {t: v["top1_agreement"] for t, v in doc["validation"].items()}
    axis = SNR if len(set(agreement.values())) == 1 else AGREEMENT
    assert f">{axis.label}<" in page and "the eval data has no labels" in page
    ok = [r for r in doc["results"] if r["status"] == "ok"]
    quality = [doc["validation"][r["target"]][axis.key] for r in ok]
    expected = {r["target"] for r, f in zip(ok, pareto_front([(r["latency_ms"]["p50"], q) for r, q in zip(ok, quality)])) if f}
    assert {t for t, c in _points(page).items() if c == "pareto"} == expected
    # fp32 has the highest SNR, so it is on the front whatever the timings
    assert "tflite:fp32" in expected or axis is AGREEMENT
    assert "accuracy</th>" not in page  # a column nobody has a number for is left out
    assert "no labels" in page and page.count('class="chosen-ring"') == 1


def test_page_is_self_contained_and_readable(labelled, unlabelled):
    for _, _, page in (labelled, unlabelled):
        assert "http://" not in page and "https://" not in page
        assert "<script" not in page and "<link" not in page and "@import" not in page and "url(" not in page
        assert f'content="{CSP}"' in page
        text = re.sub(r"<[^>]+>", " ", page.split("</style>", 1)[1])  # what a reader sees
        assert not SCIENTIFIC.search(text), SCIENTIFIC.search(text)
        assert " KiB" in text and " ms" in text and " inf/s" in text
        assert "board -" not in text and "GPUs -" not in text


def test_write_report_adds_folder_facts_the_cli_document_lacks(digits_out, tmp_path):
    out, manifest = digits_out
    config = BenchConfig(warmup=1, runs=10)
    doc = report(bench_path(out, config, target="tflite:fp32"), config)  # what `edgekit bench --report` builds
    assert "chosen" not in doc
    path = write_report(doc, tmp_path / "r.html", manifest)
    page = path.read_text()
    assert "chosen" not in doc  # the caller's document is left alone
    target, _ = choose_artifact(manifest, device=doc["device"])
    assert f"load() picks {target.target}" in page and 'id="tradeoff-chart"' in page
    assert "Per-layer" not in page  # plain int8 has no sensitivity table


def test_bare_file_says_why_there_is_no_tradeoff(digits_out):
    out, manifest = digits_out
    config = BenchConfig(warmup=1, runs=10)
    doc = report(bench_path(out / manifest.artifact("tflite:int8").path, config), config)
    page = render_html(doc)
    assert 'id="tradeoff-chart"' not in page and 'id="latency-chart"' in page
    assert "no benched artifact has an accuracy, a top-1 agreement or an SNR to plot" in page
    assert 'id="chosen"' not in page


def test_sweep_plots_one_setting_and_lists_every_one(digits_out):
    out, manifest = digits_out
    configs = [BenchConfig(warmup=1, runs=10), BenchConfig(warmup=1, runs=10, batch_size=4)]
    doc = report(bench_path(out, configs), configs[0], manifest=manifest)
    page = render_html(doc)
    assert len(doc["results"]) == 8
    assert sorted(_points(page)) == sorted(TARGETS)  # batch 4 per-call latency is not comparable: left out
    assert "Timed at batch 1" in page
    assert page.count('class="box"') == 8
    assert len(re.findall(r'class="row-label[^"]*">[^<]* b4 t\d', page)) == 4  # rows say their setting
    assert page.split('id="timing"')[1].split("</table>")[0].count("<tr") == 9  # header + every setting
    assert "<th>streams</th>" not in page  # no throughput mode, no streams column


def test_latency_chart_counts_calls_beyond_the_axis():
    slow = [0.05] * 50 + [0.06] * 50 + [5.0, 6.0]  # two 100x outliers must not squash the box
    svg = latency_svg([{"target": "t:fp32", "format": "t", "samples_ms": slow}])
    assert "+2 ▸" in svg and "2 calls slower than" in svg
    assert latency_svg([{"target": "t:fp32", "samples_ms": []}]) is None


# ---------------------------------------------------------------- the page in a real browser


def _chromium(tmp: Path, url: str, *args: str) -> subprocess.CompletedProcess:
    # A profile of our own: other chromium processes on the machine would hold the default's lock.
    return subprocess.run([CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                           "--window-size=1280,2400", f"--user-data-dir={tmp / 'profile'}", *args, url],
                          capture_output=True, text=True, timeout=180)


def _console(p: subprocess.CompletedProcess) -> list[str]:
    # With --enable-logging=stderr --v=0 this chromium writes console messages (console.error,
    # uncaught exceptions, CSP refusals) to stderr as "...:INFO:CONSOLE:<line>] ...".
    return [line for line in p.stderr.splitlines() if ":CONSOLE" in line]


def _chart_boxes(tmp: Path, page: Path) -> dict[str, list[float]]:
    """Where the charts are on the page, measured by the browser (a probe copy: the report itself runs no script)."""
    html = page.read_text()
    html = re.sub(r'<meta http-equiv="Content-Security-Policy"[^>]*>', "", html)
    probe = ('<script>const out = {}; for (const el of document.querySelectorAll("svg.chart")) {'
             'const b = el.getBoundingClientRect(); out[el.id] = [b.x, b.y, b.width, b.height]; }'
             'const pre = document.createElement("pre"); pre.id = "probe"; pre.textContent = JSON.stringify(out);'
             'document.body.appendChild(pre);</script>')
    probe_page = tmp / "probe.html"
    probe_page.write_text(html.replace("</body>", probe + "</body>"))
    p = _chromium(tmp, probe_page.as_uri(), "--dump-dom")
    found = re.search(r'<pre id="probe">(.*?)</pre>', p.stdout)
    assert found, p.stderr[-2000:]
    return json.loads(found.group(1))


def _ink(img, box: tuple[int, int, int, int]) -> tuple[float, int, int]:
    """(share of non-white pixels, coloured pixels, pixels of the pick's ring colour) inside ``box``."""
    a = np.asarray(img.crop(box).convert("RGB")).astype(int)
    non_white = float(np.mean(a.min(axis=2) < 235))
    coloured = int(np.sum(a.max(axis=2) - a.min(axis=2) > 60))
    ring = int(np.sum(np.abs(a - np.array([0xD5, 0x5E, 0x00])).sum(axis=2) < 60))
    return non_white, coloured, ring


@pytest.mark.skipif(CHROMIUM is None, reason=NO_CHROMIUM)
def test_report_renders_in_headless_chromium(digits_out, tmp_path):
    from PIL import Image

    out, _ = digits_out
    page = tmp_path / "r.html"
    p = subprocess.run([sys.executable, "-m", "edgekit.cli", "bench", str(out), "--runs", "30", "--warmup", "2",
                        "--no-cold-start", "--no-store", "--report", str(page)], capture_output=True, text=True, timeout=180)
    assert p.returncode == 0, p.stderr
    shot = tmp_path / "r.png"
    run = _chromium(tmp_path, page.as_uri(), "--enable-logging=stderr", "--v=0", f"--screenshot={shot}")
    assert run.returncode == 0 and shot.is_file(), run.stderr[-2000:]
    assert _console(run) == []
    boxes = _chart_boxes(tmp_path, page)
    assert set(boxes) == {"tradeoff-chart", "latency-chart"}
    img = Image.open(shot)
    assert img.size == (1280, 2400)
    for name, (x, y, w, h) in boxes.items():
        assert w > 600 and h > 150 and y + h <= 2400, (name, boxes[name])  # laid out in full, on the screenshot
        non_white, coloured, ring = _ink(img, (int(x), int(y), int(x + w), int(y + h)))
        assert non_white > 0.01 and coloured > 200, (name, non_white, coloured)
        if name == "tradeoff-chart":
            assert ring > 30, ring  # the ring around what load() picks was painted
    # the measure tells a blank region from a chart: below the page's content nothing is drawn
    bottom = max(y + h for _, y, _, h in boxes.values())
    blank = _ink(img, (0, 2300, 1280, 2400)) if bottom < 2100 else (0.0, 0, 0)
    assert blank[0] < 0.001 and blank[1] == 0


@pytest.mark.skipif(CHROMIUM is None, reason=NO_CHROMIUM)
def test_console_check_catches_a_network_reference(tmp_path, labelled):
    # The console method must see what it guards against: the CSP refuses a stray remote image and
    # chromium says so on stderr.
    _, _, page = labelled
    bad = tmp_path / "bad.html"
    bad.write_text(page.replace("<h1>", '<img src="https://example.invalid/x.png"><h1>', 1))
    run = _chromium(tmp_path, bad.as_uri(), "--enable-logging=stderr", "--v=0", f"--screenshot={tmp_path / 'bad.png'}")
    lines = _console(run)
    assert any("example.invalid" in line and "Content Security Policy" in line for line in lines), run.stderr[-2000:]
