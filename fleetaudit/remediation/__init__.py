"""Cancelling stale OTA tasks (`fleetaudit cancel`): plan from a run's findings, dry run first.

plan.py    pure: findings -> Plan (calls of <= 200 devices per product/firmware/job),
           the re-check before applying, each task's outcome
render.py  pure: the plan and outcome tables the command prints
ledger.py  pure: the cancel journal's entries, what is pending, reconciling it
files.py   the run-directory files read and written (atomically), the journal's file
apply.py   reconcile, re-read, cancel, confirm through the client; `cancel_command`

Import from the modules themselves: the package imports nothing, so the pure parts stay
free of the HTTP client.
"""
