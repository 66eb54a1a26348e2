"""fleetaudit: audit a fleet of IoT devices through the platform's OTA API into Parquet reports."""

__version__ = "0.1.0"
