"""fleetaudit: audit a fleet of IoT devices through the platform's OTA API into Parquet reports."""

from importlib.metadata import version

# The version is declared once, in pyproject.toml; the installed distribution's metadata carries
# it here (`make install` always installs editable, so a checkout is never imported uninstalled).
__version__ = version("fleetaudit")
