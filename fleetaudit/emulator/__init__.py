"""A local emulator of the platform's OTA API, strict like the real one."""

from fleetaudit.emulator.app import FLEET_KEY, STATS_KEY, EmulatorStats, create_app
from fleetaudit.emulator.faults import FaultPlan
from fleetaudit.emulator.fleet import (
    Fleet,
    FleetDevice,
    FleetFirmware,
    FleetJob,
    FleetTask,
    StaticFleet,
)
from fleetaudit.emulator.server import serve, serve_in_thread
from fleetaudit.emulator.synthetic import SyntheticFleet

__all__ = [
    "FLEET_KEY",
    "STATS_KEY",
    "EmulatorStats",
    "FaultPlan",
    "Fleet",
    "FleetDevice",
    "FleetFirmware",
    "FleetJob",
    "FleetTask",
    "StaticFleet",
    "SyntheticFleet",
    "create_app",
    "serve",
    "serve_in_thread",
]
