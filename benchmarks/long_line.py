"""Peak memory of reading a device list with one huge line (CSV and JSONL), per format.

    .venv/bin/python benchmarks/long_line.py --mib 1024

Writes the files in a temporary directory, reads each with `validate_device_list` in a
child process and prints the child's peak RSS (`os.wait4`) and how the read ended.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

_CHILD = """
import sys
from fleetaudit.devices import validate_device_list
from fleetaudit.errors import InputError
try:
    check = validate_device_list(sys.argv[1])
    print(f"accepted: {check.rows} rows")
except InputError as error:
    print(f"refused: {str(error)[-90:]}")
"""


def write_file(path: Path, mib: int) -> None:
    """A list whose second row names a device of `mib` MiB, written in 1 MiB pieces."""
    piece = b"x" * (1 << 20)
    with path.open("wb") as file:
        if path.suffix == ".csv":
            file.write(b"product_key,device_name\npk,")
        else:
            file.write(b'{"product_key":"pk","device_name":"a"}\n')
            file.write(b'{"product_key":"pk","device_name":"')
        for _ in range(mib):
            file.write(piece)
        file.write(b"\n" if path.suffix == ".csv" else b'"}\n')


def peak_rss(path: Path) -> tuple[float, str]:
    """(peak RSS in MB, the child's one line of output) of reading `path`."""
    child = subprocess.Popen([sys.executable, "-c", _CHILD, str(path)], stdout=subprocess.PIPE)
    assert child.stdout is not None
    said = child.stdout.read().decode().strip()
    _, _, usage = os.wait4(child.pid, 0)
    child.returncode = 0  # reaped above
    return usage.ru_maxrss / 1024, said


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mib", type=int, default=1024, help="length of the long line, MiB")
    parser.add_argument("--only", choices=("csv", "jsonl"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for suffix in ("csv", "jsonl"):
            if args.only and suffix != args.only:
                continue
            path = Path(tmp) / f"devices.{suffix}"
            write_file(path, args.mib)
            mb, said = peak_rss(path)
            print(f"{suffix:5} {args.mib} MiB line: peak RSS {mb:,.0f} MB; {said}")
            path.unlink()


if __name__ == "__main__":
    main()
