"""fleetaudit's exceptions and the exit code each one maps to.

Every failure that reaches the command line is one of these; `exit_code_for` is the only
place that maps them to process exit codes (see docs/REPORTS.md):

    FleetauditError
    ├── UsageError            exit 2: bad option, job file, policy or configuration
    │   └── InputError        exit 2: a malformed input file (names file, line, column)
    ├── AuthError             exit 3: credentials, signature, clock skew or permission:
    │                         the whole run stops at once, nothing is retried
    ├── RunIncomplete         exit 4: aborted or too many failures; the run can be resumed
    ├── LockHeld              exit 4: another run holds OUT/.lock (or another apply
    │                         RUN_DIR/.cancel.lock); nothing was done
    └── ApiError              one API call failed (raised inside the client)
        ├── TransientError    worth retrying: throttling, 5xx, timeouts, broken bodies
        └── CallFailed        final: not retryable, or retries exhausted. Carries a
                              `CallFailure` value that callers record as a row in the
                              errors table instead of crashing.

Messages never contain secrets: the client strips the `server string to sign is:` tail
of gateway messages before it builds any of these.
"""

from __future__ import annotations

from fleetaudit.models import CallFailure

EXIT_OK = 0
EXIT_GATE_FAILED = 1
EXIT_USAGE = 2
EXIT_AUTH = 3
EXIT_INCOMPLETE = 4


class FleetauditError(Exception):
    """Base of every error fleetaudit raises on purpose."""

    exit_code = EXIT_INCOMPLETE


class UsageError(FleetauditError):
    """A bad option, job file, policy file or configuration value."""

    exit_code = EXIT_USAGE


class InputError(UsageError):
    """A malformed input file; the message names the file, line and column."""

    def __init__(self, path: str, line: int | None, column: str | None, problem: str) -> None:
        where = str(path)
        if line is not None:
            where += f", line {line}"
        if column is not None:
            where += f", column {column!r}"
        super().__init__(f"{where}: {problem}")
        self.path = path
        self.line = line
        self.column = column
        self.problem = problem


class AuthError(FleetauditError):
    """The platform refused our identity or permissions; retrying cannot help."""

    exit_code = EXIT_AUTH

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class RunIncomplete(FleetauditError):
    """The run stopped before auditing every device; `--resume` continues it."""

    exit_code = EXIT_INCOMPLETE


class LockHeld(FleetauditError):
    """Another run (or apply) holds the same directory's lock; nothing was done."""

    # Like an incomplete run: this run did not happen, and cron should say so.
    exit_code = EXIT_INCOMPLETE


class ApiError(FleetauditError):
    """One API call failed."""

    def __init__(
        self,
        code: str,
        message: str,
        *,
        http_status: int | None = None,
        request_id: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.http_status = http_status
        self.request_id = request_id
        # Seconds the server asked us to wait before the next attempt, when it said so.
        self.retry_after = retry_after


class TransientError(ApiError):
    """A failure worth retrying (throttling, 5xx, timeouts, broken bodies)."""

    @property
    def throttled(self) -> bool:
        return self.code.startswith("Throttling")


class CallFailed(ApiError):
    """A call that failed for good; `failure` is the row for the errors table."""

    def __init__(self, failure: CallFailure) -> None:
        super().__init__(
            failure.error_code,
            failure.error_message,
            http_status=failure.http_status,
            request_id=failure.request_id,
        )
        self.failure = failure


def exit_code_for(error: BaseException) -> int:
    """The process exit code for an error that reached the command line."""
    if isinstance(error, FleetauditError):
        return error.exit_code
    return EXIT_INCOMPLETE
