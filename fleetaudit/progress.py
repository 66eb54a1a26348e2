"""Progress of a run for people and for logs: a redrawn terminal line, or periodic log lines.

Both sinks implement `pipeline.ProgressSink` and show the same numbers (`ProgressState`):
devices done / total, calls per second per action, throttled responses, and an ETA. The ETA
comes from the quota until devices have finished, then from the observed device rate.

The terminal line is hand-written (a carriage return and an erase-to-end-of-line) rather
than a progress library: one line of text does not justify a runtime dependency. The clock
is a parameter so tests move a fake one instead of sleeping.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TextIO

import orjson

from fleetaudit.api.stats import ApiStats
from fleetaudit.durations import format_duration
from fleetaudit.report.manifest import iso_utc
from fleetaudit.terms import Action, AuditStatus

Clock = Callable[[], float]
# Every device costs one call of each of these; the slower quota bounds devices per second.
PER_DEVICE_ACTIONS: tuple[Action, ...] = (Action.LIST_MODULE_VERSIONS, Action.LIST_UNFINISHED_TASKS)
_SHORT_NAMES: Mapping[str, str] = {
    Action.LIST_MODULE_VERSIONS: "versions",
    Action.LIST_UNFINISHED_TASKS: "tasks",
    Action.QUERY_FIRMWARE: "firmware",
    Action.LIST_JOBS: "jobs",
    Action.CANCEL_TASKS: "cancel",
}
_BAR_WIDTH = 20
_MIN_RATE_WINDOW_S = 1.0


@dataclass(frozen=True, slots=True)
class ProgressState:
    """The numbers both sinks show at one moment."""

    done: int
    total: int
    elapsed_s: float
    calls_per_s: Mapping[str, float]
    throttled: int
    retries: int
    failures: int
    errors: int  # devices whose audit_status is "error"
    eta_s: float | None

    @property
    def percent(self) -> float:
        return 100.0 * self.done / self.total if self.total else 100.0


@dataclass(slots=True)
class _Tracker:
    """What a sink counts between `start` and `finish`; `state()` turns it into numbers."""

    clock: Clock
    quotas: Mapping[str, float]
    total: int = 0
    done: int = 0
    done_at_start: int = 0
    errors: int = 0
    started: float = 0.0
    stats: ApiStats = field(default_factory=ApiStats)
    # Requests sent before `start` (the firmware lookups of the policy's targets): they took
    # time before the clock started, so counting them in a rate would make it up.
    sent_before: Mapping[str, int] = field(default_factory=dict)

    def start(self, total: int, already_done: int, stats: ApiStats) -> None:
        self.total, self.done, self.done_at_start = total, already_done, already_done
        self.stats = stats
        self.sent_before = {a: n["attempts"] for a, n in stats.as_dict().items()}
        self.started = self.clock()

    def advance(self, audit_status: str) -> None:
        self.done += 1
        if audit_status == AuditStatus.ERROR:
            self.errors += 1

    def state(self) -> ProgressState:
        elapsed = max(0.0, self.clock() - self.started)
        per_action = self.stats.as_dict()
        totals = self.stats.snapshot()
        # Requests sent, not calls begun: a call waiting for its pace slot is not traffic.
        # Over less than a second a rate is noise (one request in 3 us read 364722.1/s):
        # the window counts as a second until it is one.
        window = max(elapsed, _MIN_RATE_WINDOW_S)
        rates = {
            action: max(0, numbers["attempts"] - self.sent_before.get(action, 0)) / window
            for action, numbers in per_action.items()
        }
        return ProgressState(
            done=self.done,
            total=self.total,
            elapsed_s=elapsed,
            calls_per_s=rates,
            throttled=totals.throttled,
            retries=totals.retries,
            failures=totals.failures,
            errors=self.errors,
            eta_s=self._eta(elapsed),
        )

    def _eta(self, elapsed: float) -> float | None:
        remaining = max(0, self.total - self.done)
        finished_here = self.done - self.done_at_start
        if finished_here > 0 and elapsed > 0:
            return remaining / (finished_here / elapsed)
        return quota_eta(remaining, self.quotas)


def quota_eta(remaining: int, quotas: Mapping[str, float]) -> float | None:
    """Seconds for `remaining` devices at the per-device actions' quotas; None if unknown."""
    limits = [quotas[action] for action in PER_DEVICE_ACTIONS if action in quotas]
    if not limits or min(limits) <= 0:
        return None
    return remaining / min(limits)


def _eta_text(eta_s: float | None) -> str:
    return "?" if eta_s is None else format_duration(round(eta_s)) if eta_s >= 1 else "0s"


def _rates_text(state: ProgressState, *, short: bool) -> str:
    parts = []
    for action, rate in state.calls_per_s.items():
        if short and rate == 0:
            continue  # a terminal line has no room for actions this run does not call
        name = _SHORT_NAMES.get(action, action) if short else action
        parts.append(f"{name} {rate:.1f}/s" if short else f"{name}={rate:.1f}")
    return " ".join(parts) or "-"


# ---------------------------------------------------------------------------- terminal


class TerminalProgress:
    """One line redrawn in place (at most `max_fps` times a second), then left on screen."""

    def __init__(
        self,
        stream: TextIO,
        clock: Clock = time.monotonic,
        *,
        quotas: Mapping[str, float] | None = None,
        max_fps: float = 5.0,
    ) -> None:
        self._stream = stream
        self._tracker = _Tracker(clock, quotas or {})
        self._clock = clock
        self._interval = 1.0 / max_fps
        self._last_draw: float | None = None

    def start(self, total: int, already_done: int, stats: ApiStats) -> None:
        self._tracker.start(total, already_done, stats)
        self._draw()

    def advance(self, audit_status: str) -> None:
        self._tracker.advance(audit_status)
        self.tick()

    def tick(self) -> None:
        """Redraw if due, device or not: rates and ETA move while calls are throttled."""
        # Redrawing on every device would spend more time on the terminal than on the audit.
        if self._last_draw is None or self._clock() - self._last_draw >= self._interval:
            self._draw()

    def finish(self) -> None:
        self._draw()
        self._stream.write("\n")
        self._stream.flush()

    def _draw(self) -> None:
        self._last_draw = self._clock()
        # "\r" returns to the line start and "\x1b[K" erases what a longer line left behind.
        # A line longer than the terminal wraps, and "\r" would only redraw its last part.
        width = shutil.get_terminal_size().columns - 1
        self._stream.write("\r" + terminal_line(self._tracker.state(), width) + "\x1b[K")
        self._stream.flush()


def terminal_line(state: ProgressState, width: int | None = None) -> str:
    """`[#####...] 1234/5000 24.7% | versions 9.8/s tasks 9.8/s | throttled 3 | ETA 6m 20s`,
    fitted to `width` columns by giving up the least useful parts first.

    The counts, the throttle count, the device errors and the ETA are what an operator
    watches, so they stay; the bar shrinks and goes first (the percent says the same), then
    the per-action rates become one total, then go, then the labels shorten. Only a width
    too small for even that cuts the line.
    """
    counts = f"{state.done}/{state.total} {state.percent:.1f}%"
    eta = _eta_text(state.eta_s)
    rates = _rates_text(state, short=True)
    total_rate = f"calls {sum(state.calls_per_s.values()):.1f}/s"
    errors = [f"errors {state.errors}"] if state.errors else []
    full = [f"throttled {state.throttled}", *errors, f"ETA {eta}"]
    candidates = [
        [f"{_bar(state, _BAR_WIDTH)} {counts}", rates, *full],
        [f"{_bar(state, _BAR_WIDTH // 2)} {counts}", rates, *full],
        [counts, rates, *full],
        [counts, total_rate, *full],
        [counts, *full],
    ]
    for parts in candidates:
        line = " | ".join(parts)
        if width is None or len(line) <= width:
            return line
    short_errors = f" err {state.errors}" if state.errors else ""
    compact = f"{counts} thr {state.throttled}{short_errors} ETA {eta}"
    return compact[:width]


def _bar(state: ProgressState, width: int) -> str:
    filled = int(width * state.done / state.total) if state.total else width
    return "[" + "#" * filled + "." * (width - filled) + "]"


# ---------------------------------------------------------------------------- logs


class LogProgress:
    """One line per `every_s` seconds (plain text or JSON), plus one at start and finish.

    Lines hold no control characters, so a log file or the journal stays greppable.
    """

    def __init__(
        self,
        stream: TextIO,
        clock: Clock = time.time,
        *,
        every_s: float = 30.0,
        json: bool = False,
        quotas: Mapping[str, float] | None = None,
    ) -> None:
        self._stream = stream
        self._clock = clock
        self._tracker = _Tracker(clock, quotas or {})
        self._every_s = every_s
        self._json = json
        self._last_line = 0.0

    def start(self, total: int, already_done: int, stats: ApiStats) -> None:
        self._tracker.start(total, already_done, stats)
        self._emit("start")

    def advance(self, audit_status: str) -> None:
        self._tracker.advance(audit_status)
        self.tick()

    def tick(self) -> None:
        """A line if one is due, device or not: a throttled run must not look hung in logs."""
        if self._clock() - self._last_line >= self._every_s:
            self._emit("progress")

    def finish(self) -> None:
        self._emit("finish")

    def _emit(self, event: str) -> None:
        self._last_line = self._clock()
        state = self._tracker.state()
        # The clock is wall time here: a log line read later needs to say when it was.
        stamp = iso_utc(round(self._last_line * 1000))
        line = json_line(event, state, stamp) if self._json else f"{stamp} {log_line(event, state)}"
        self._stream.write(line + "\n")
        self._stream.flush()


def log_line(event: str, state: ProgressState) -> str:
    """`progress: 1234/5000 devices (24.7%), calls/s A=9.8 B=9.8, throttled 3, ..., ETA 6m`."""
    return (
        f"fleetaudit {event}: {state.done}/{state.total} devices ({state.percent:.1f}%), "
        f"calls/s {_rates_text(state, short=False)}, throttled {state.throttled}, "
        f"retries {state.retries}, failures {state.failures}, device errors {state.errors}, "
        f"elapsed {_eta_text(state.elapsed_s)}, ETA {_eta_text(state.eta_s)}"
    )


def json_line(event: str, state: ProgressState, stamp: str) -> str:
    """The same numbers as one JSON object, for log shippers."""
    document = {
        "time": stamp,
        "event": event,
        "done": state.done,
        "total": state.total,
        "percent": round(state.percent, 2),
        "calls_per_s": {a: round(r, 3) for a, r in state.calls_per_s.items()},
        "throttled": state.throttled,
        "retries": state.retries,
        "failures": state.failures,
        "device_errors": state.errors,
        "elapsed_s": round(state.elapsed_s, 3),
        "eta_s": None if state.eta_s is None else round(state.eta_s, 1),
    }
    return orjson.dumps(document).decode("utf-8")


def choose_progress(
    stream: TextIO,
    log_format: str | None,
    clock: Clock = time.time,
    *,
    quotas: Mapping[str, float] | None = None,
    every_s: float = 30.0,
) -> TerminalProgress | LogProgress:
    """A redrawn line on a terminal (unless JSON logs are asked for), log lines otherwise."""
    if log_format != "json" and stream.isatty():
        return TerminalProgress(stream, clock, quotas=quotas)
    return LogProgress(stream, clock, every_s=every_s, json=log_format == "json", quotas=quotas)
