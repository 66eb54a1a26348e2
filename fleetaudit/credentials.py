"""Where credentials come from: two environment variables, never arguments or files (pure).

The variable names live here once; the CLI, the emulator, the demo and every hint that
names them read them from this module.
"""

from __future__ import annotations

from collections.abc import Mapping

from fleetaudit.errors import UsageError
from fleetaudit.models import Credentials

KEY_ID_ENV = "FLEETAUDIT_ACCESS_KEY_ID"
SECRET_ENV = "FLEETAUDIT_ACCESS_KEY_SECRET"


def credentials_from_env(environ: Mapping[str, str]) -> Credentials:
    """The access key pair from the environment; a missing one is a usage error naming it."""
    key_id = environ.get(KEY_ID_ENV, "").strip()
    secret = environ.get(SECRET_ENV, "").strip()
    missing = [name for name, value in ((KEY_ID_ENV, key_id), (SECRET_ENV, secret)) if not value]
    if missing:
        raise UsageError(f"set {' and '.join(missing)} in the environment")
    return Credentials(key_id, secret)
