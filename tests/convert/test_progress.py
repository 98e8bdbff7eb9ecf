"""Progress lines of the long steps: counted samples, a bounded cadence, silence for short steps."""

from __future__ import annotations

import os

from edgekit.convert.progress import counter, reporting
from edgekit.quiet import captured_output, uncaptured


def test_short_steps_stay_silent_and_long_ones_report_at_the_interval(monkeypatch):
    lines: list[str] = []
    with reporting(lines.append, "  t: "):  # default interval (10 s): a quick loop says nothing
        tick = counter("validation", 1000)
        for done in range(0, 1001, 100):
            tick(done)
    assert lines == []

    clock = iter(range(0, 100, 3))  # 3 "seconds" per call
    monkeypatch.setattr("edgekit.convert.progress.time.perf_counter", lambda: next(clock))
    with reporting(lines.append, "  t: ", interval=5):
        tick = counter("calibration", 200)
        for done in (50, 100, 150, 200):
            tick(done)
    # t0=0; calls at 3 (too soon), 6 (report), 9 (too soon), 12 (final, after an earlier line)
    assert lines == ["  t: calibration 100/200 samples (50%, 6.0s)", "  t: calibration 200/200 samples (100%, 12.0s)"]


def test_counters_outside_a_convert_do_nothing():
    counter("calibration", 5)(5)  # no reporting block: no error, no output


def test_bad_interval_setting_falls_back_to_the_default(monkeypatch):
    from edgekit.convert import progress

    for bad in ("soon", "-1"):
        monkeypatch.setenv("EDGEKIT_PROGRESS_INTERVAL", bad)
        assert progress._interval() == progress.INTERVAL
    monkeypatch.setenv("EDGEKIT_PROGRESS_INTERVAL", "0.5")
    assert progress._interval() == 0.5


def test_uncaptured_reaches_the_real_descriptor_while_the_rest_is_captured(tmp_path):
    out = tmp_path / "terminal"
    fd = os.open(out, os.O_WRONLY | os.O_CREAT)
    saved = os.dup(1)
    os.dup2(fd, 1)  # stand-in for the terminal on fd 1
    try:
        with captured_output() as cap:
            os.write(1, b"converter noise\n")
            with uncaptured():
                os.write(1, b"our line\n")
            os.write(1, b"more noise\n")
    finally:
        os.dup2(saved, 1)
        os.close(saved)
        os.close(fd)
    assert cap.text == "converter noise\nmore noise\n"
    assert out.read_text() == "our line\n"
