"""Progress sinks: the redrawn terminal line and the periodic log lines, on a fake clock."""

from __future__ import annotations

import io
import re

import orjson
import pytest

from fleetaudit.api.stats import ApiStats
from fleetaudit.progress import (
    LogProgress,
    ProgressState,
    TerminalProgress,
    choose_progress,
    quota_eta,
    terminal_line,
)

from helpers import FakeClock

VERSIONS = "ListOTAModuleVersionsByDevice"
TASKS = "ListOTAUnfinishedTaskByDevice"
QUOTAS = {VERSIONS: 10.0, TASKS: 5.0, "QueryOTAFirmware": 20.0}
_CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f\x7f]")


class TtyStream(io.StringIO):
    """A StringIO that says it is a terminal."""

    def isatty(self) -> bool:
        return True


def _calls(stats: ApiStats, action: str, n: int, *, throttled: int = 0) -> None:
    """`n` calls of `action` sent (rates count requests sent, not calls begun)."""
    stats.action(action).calls += n
    stats.action(action).attempts += n
    stats.action(action).throttled += throttled


def _run_devices(
    sink: TerminalProgress | LogProgress, clock: FakeClock, n: int, step: float
) -> None:
    for _ in range(n):
        clock.advance(step)
        sink.advance("ok")


def test_terminal_line_shows_counts_rates_throttles_and_eta() -> None:
    """The terminal line has done/total, percent, calls/s per action, throttles and ETA."""
    clock, stream, stats = FakeClock(1000.0), TtyStream(), ApiStats()
    sink = TerminalProgress(stream, clock, quotas=QUOTAS)
    sink.start(100, 0, stats)
    _calls(stats, VERSIONS, 20, throttled=3)
    _run_devices(sink, clock, 10, 0.5)  # 10 devices in 5 s: 2 devices/s
    last = stream.getvalue().split("\r")[-1]
    assert "10/100 10.0%" in last
    assert "versions 4.0/s" in last
    assert "throttled 3" in last
    assert last.endswith("ETA 45s\x1b[K")  # 90 devices at the observed 2 devices/s


def test_terminal_redraws_at_most_five_times_a_second() -> None:
    """Devices finishing faster than 5/s do not each redraw the line."""
    clock, stream = FakeClock(), TtyStream()
    sink = TerminalProgress(stream, clock)
    sink.start(1000, 0, ApiStats())
    _run_devices(sink, clock, 100, 0.01)  # one second of devices
    assert stream.getvalue().count("\r") <= 1 + 5 + 1


def test_terminal_finish_ends_the_line() -> None:
    """Finishing draws the final numbers and moves to a new line for the summary."""
    clock, stream = FakeClock(), TtyStream()
    sink = TerminalProgress(stream, clock)
    sink.start(2, 0, ApiStats())
    _run_devices(sink, clock, 2, 0.01)
    sink.finish()
    assert stream.getvalue().endswith("2/2 100.0% | - | throttled 0 | ETA 0s\x1b[K\n")


def test_eta_before_any_device_comes_from_the_quota() -> None:
    """Before a device finishes, the ETA is remaining devices at the slower per-device quota."""
    clock, stream = FakeClock(), TtyStream()
    sink = TerminalProgress(stream, clock, quotas=QUOTAS)
    sink.start(3000, 0, ApiStats())
    assert stream.getvalue().endswith("ETA 10m\x1b[K")  # 3000 devices / 5 per second


def test_quota_eta_unknown_without_quotas() -> None:
    """Without per-device quotas there is no quota estimate."""
    assert quota_eta(10, {"QueryOTAFirmware": 20.0}) is None


def test_resumed_run_rate_counts_only_this_sessions_devices() -> None:
    """Devices already done by an earlier session do not inflate the observed rate."""
    clock, stream = FakeClock(), TtyStream()
    sink = TerminalProgress(stream, clock)
    sink.start(1000, 900, ApiStats())
    _run_devices(sink, clock, 10, 1.0)  # 1 device/s here
    assert stream.getvalue().endswith("910/1000 91.0% | - | throttled 0 | ETA 1m 30s\x1b[K")


def test_log_lines_once_per_interval_without_control_characters() -> None:
    """Not on a terminal: a line at start, one per interval, one at finish; no control chars."""
    clock, stream, stats = FakeClock(0.0), io.StringIO(), ApiStats()
    sink = LogProgress(stream, clock, every_s=30.0, quotas=QUOTAS)
    sink.start(100, 0, stats)
    _calls(stats, TASKS, 50)
    _run_devices(sink, clock, 100, 1.0)  # 100 s: lines at 30, 60, 90 s
    sink.finish()
    lines = stream.getvalue().splitlines()
    assert len(lines) == 1 + 3 + 1
    assert not _CONTROL.search(stream.getvalue())
    assert lines[1] == (
        "1970-01-01T00:00:30.000Z fleetaudit progress: 30/100 devices (30.0%), "
        f"calls/s {TASKS}=1.7, throttled 0, retries 0, failures 0, device errors 0, "
        "elapsed 30s, ETA 1m 10s"
    )


def test_log_lines_count_device_errors() -> None:
    """Devices whose audit ended in error are counted on the line."""
    clock, stream = FakeClock(0.0), io.StringIO()
    sink = LogProgress(stream, clock)
    sink.start(2, 0, ApiStats())
    sink.advance("error")
    sink.finish()
    assert "device errors 1" in stream.getvalue().splitlines()[-1]


def test_json_log_lines_carry_the_same_numbers() -> None:
    """With json=True each line is one JSON object with the same numbers."""
    clock, stream, stats = FakeClock(0.0), io.StringIO(), ApiStats()
    sink = LogProgress(stream, clock, json=True, quotas=QUOTAS)
    sink.start(10, 0, stats)
    _calls(stats, VERSIONS, 8, throttled=2)
    _run_devices(sink, clock, 4, 1.0)
    sink.finish()
    last = orjson.loads(stream.getvalue().splitlines()[-1])
    assert last == {
        "time": "1970-01-01T00:00:04.000Z",
        "event": "finish",
        "done": 4,
        "total": 10,
        "percent": 40.0,
        "calls_per_s": {VERSIONS: 2.0},
        "throttled": 2,
        "retries": 0,
        "failures": 0,
        "device_errors": 0,
        "elapsed_s": 4.0,
        "eta_s": 6.0,
    }


def test_choose_progress_picks_by_tty_and_format() -> None:
    """A terminal gets the redrawn line; a pipe, or json logs, get log lines."""
    clock = FakeClock()
    assert isinstance(choose_progress(TtyStream(), "text", clock), TerminalProgress)
    assert isinstance(choose_progress(io.StringIO(), "text", clock), LogProgress)
    assert isinstance(choose_progress(TtyStream(), "json", clock), LogProgress)


def test_rates_count_requests_sent_not_calls_waiting_for_their_pace() -> None:
    """A call still waiting for its pace slot adds nothing to the calls-per-second rate."""
    clock, stream, stats = FakeClock(0.0), io.StringIO(), ApiStats()
    sink = LogProgress(stream, clock, every_s=1.0)
    sink.start(10, 0, stats)
    stats.action("ListOTAUnfinishedTaskByDevice").calls += 64  # begun, none sent yet
    clock.advance(2.0)
    sink.tick()
    assert "ListOTAUnfinishedTaskByDevice=0.0" in stream.getvalue().splitlines()[-1]


def test_lookups_before_the_start_do_not_inflate_the_rates() -> None:
    """Firmware lookups sent before the devices start are no rate: the start line shows
    0.0/s for them (it read `QueryOTAFirmware=364722.1` over a 3 us window), and later
    lines count only what was sent since."""
    clock, stream, stats = FakeClock(1000.0), io.StringIO(), ApiStats()
    _calls(stats, "QueryOTAFirmware", 1)  # the policy's target, looked up first
    sink = LogProgress(stream, clock, every_s=10.0, quotas=QUOTAS)
    clock.advance(0.000003)
    sink.start(100, 0, stats)
    assert "QueryOTAFirmware=0.0" in stream.getvalue().splitlines()[0]
    _calls(stats, "QueryOTAFirmware", 10)
    clock.advance(10.0)
    sink.tick()
    assert "QueryOTAFirmware=1.0" in stream.getvalue().splitlines()[-1]


def test_a_rate_over_less_than_a_second_is_counted_over_a_second() -> None:
    """Two requests 1 ms after the start read 2.0/s, not 2000/s."""
    clock, stream, stats = FakeClock(1000.0), io.StringIO(), ApiStats()
    sink = LogProgress(stream, clock, every_s=0.0, quotas=QUOTAS)
    sink.start(100, 0, stats)
    _calls(stats, VERSIONS, 2)
    clock.advance(0.001)
    sink.tick()
    assert f"{VERSIONS}=2.0," in stream.getvalue().splitlines()[-1]


def test_terminal_line_fits_the_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    """The redrawn line is cut to the terminal's width, since a wrapped line cannot be redrawn."""
    monkeypatch.setenv("COLUMNS", "40")
    clock, stream, stats = FakeClock(0.0), TtyStream(), ApiStats()
    sink = TerminalProgress(stream, clock)
    sink.start(100, 0, stats)
    drawn = stream.getvalue().split("\r")[-1].removesuffix("\x1b[K")
    assert len(drawn) <= 39
    assert drawn.endswith("ETA ?")


def busy_state() -> ProgressState:
    """A long run mid-way: four actions called, throttled, some device errors."""
    rates = {VERSIONS: 9.8, TASKS: 9.8, "QueryOTAFirmware": 0.2, "ListOTAJobByDevice": 3.9}
    return ProgressState(
        done=12_345, total=100_000, elapsed_s=1_260.0, calls_per_s=rates, throttled=1_234,
        retries=40, failures=2, errors=12, eta_s=9_960.0,
    )  # fmt: skip


@pytest.mark.parametrize("width", [80, 60])
def test_narrow_terminal_line_keeps_counts_throttles_errors_and_eta(width: int) -> None:
    """At 80 and 60 columns the line fits and still shows the counts, the throttle count,
    the device errors and the ETA: the bar and the per-action rates give way first."""
    line = terminal_line(busy_state(), width)
    assert len(line) <= width
    assert "12345/100000 12.3%" in line
    assert "throttled 1234" in line
    assert "errors 12" in line
    assert line.endswith("ETA 2h 46m")


def test_terminal_line_drops_the_bar_before_the_rates() -> None:
    """At 80 columns the bar is gone but the total call rate is kept; wide, all is shown."""
    assert terminal_line(busy_state(), 80) == (
        "12345/100000 12.3% | calls 23.7/s | throttled 1234 | errors 12 | ETA 2h 46m"
    )
    wide = terminal_line(busy_state(), 200)
    assert wide.startswith("[##..................] 12345/100000")
    assert "versions 9.8/s tasks 9.8/s firmware 0.2/s jobs 3.9/s" in wide
    assert wide == terminal_line(busy_state())


def test_tiny_terminal_line_shortens_labels_before_cutting() -> None:
    """Below what the labelled parts need, the labels shorten; only then is the line cut."""
    assert terminal_line(busy_state(), 45) == "12345/100000 12.3% thr 1234 err 12 ETA 2h 46m"
    assert len(terminal_line(busy_state(), 20)) == 20


def test_terminal_sink_at_80_columns_shows_the_eta(monkeypatch: pytest.MonkeyPatch) -> None:
    """The redrawn line of an 81-column terminal (80 usable) ends with the ETA."""
    monkeypatch.setenv("COLUMNS", "81")
    clock, stream, stats = FakeClock(1000.0), TtyStream(), ApiStats()
    sink = TerminalProgress(stream, clock, quotas=QUOTAS)
    sink.start(100_000, 0, stats)
    for action in (VERSIONS, TASKS, "QueryOTAFirmware", "ListOTAJobByDevice"):
        _calls(stats, action, 200, throttled=300)
    _run_devices(sink, clock, 100, 0.5)
    drawn = stream.getvalue().split("\r")[-1].removesuffix("\x1b[K")
    assert len(drawn) <= 80
    assert "throttled 1200" in drawn
    assert re.search(r"ETA \S+", drawn)
