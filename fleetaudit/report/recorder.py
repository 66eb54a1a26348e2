"""Buffers each device's rows and writes them to the staged run, a commit at a time.

The rows come ready-made from the join (`fleetaudit.audit.join`); the recorder only holds
them until the pipeline decides to commit, so a commit is one set of parts per table.
"""

from __future__ import annotations

from collections.abc import Sequence

from fleetaudit.audit.join import DeviceRows
from fleetaudit.report.staging import RunStaging
from fleetaudit.terms import Table


class Recorder:
    """Rows of every table, buffered until the next commit of `staging`."""

    def __init__(self, staging: RunStaging) -> None:
        self._staging = staging
        self._rows: dict[Table, list[object]] = {}
        self.pending = 0  # devices recorded since the last commit

    def record(self, rows: DeviceRows) -> None:
        """Buffer one device's rows."""
        for table, table_rows in rows.by_table().items():
            self.add(table, table_rows)
        self.pending += 1

    def add(self, table: Table, rows: Sequence[object]) -> None:
        """Buffer rows that belong to no device (the firmware a policy target names)."""
        if rows:
            self._rows.setdefault(table, []).extend(rows)

    def commit(self) -> None:
        """Write everything buffered and make it durable (see `RunStaging.commit`)."""
        for table, rows in self._rows.items():
            self._staging.append(table, rows)
        self._rows = {}
        self._staging.commit()
        self.pending = 0
