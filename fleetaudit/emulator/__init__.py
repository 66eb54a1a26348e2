"""A local emulator of the platform's OTA API, strict like the real one.

app.py        create_app(fleet, ...): the aiohttp application (gateway checks, quotas, faults)
actions.py    the five actions: parameters, business errors, response bodies (no I/O)
fleet.py      Fleet, StaticFleet and the fleet's records; synthetic.py: SyntheticFleet
faults.py     FaultPlan; quota.py: the token buckets; server.py: serve, serve_in_thread
cli.py        the `fleetaudit emulator` command

Import from the modules themselves: the package imports nothing, so the command line
does not load the server to build its help.
"""
