"""The stable key of a finding across runs, computed over whole Arrow columns (pure).

A key is a JSON array: the finding type, then what identifies a finding of that type
(`KEY_COLUMNS`): a drift is about a device's module whatever version it drifted to, a
stalled task is about that task whatever its age. Keys are built column-wise, never row by
row in Python, so a million findings key in well under a second and in Arrow's memory.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from fleetaudit.terms import FindingType

# Every column a key may use, in the order a key lists them.
ANY_KEY = ("product_key", "device_name", "module_name", "task_id", "firmware_id", "job_id")
_DEVICE = ("product_key", "device_name")
_TASK = (*_DEVICE, "task_id")
# What identifies one finding of each type, besides its type (each in ANY_KEY's order); a
# type not listed (a rule added later) is keyed by every column of ANY_KEY.
KEY_COLUMNS: Mapping[str, tuple[str, ...]] = {
    FindingType.VERSION_DRIFT: (*_DEVICE, "module_name"),
    FindingType.MODULE_MISSING: (*_DEVICE, "module_name"),
    FindingType.STALLED_TASK: _TASK,
    FindingType.TASK_SRC_MISMATCH: _TASK,
    FindingType.TASK_ALREADY_APPLIED: _TASK,
    FindingType.ORPHAN_TASK: _TASK,
    FindingType.DUPLICATE_TASKS: _TASK,
    FindingType.FIRMWARE_UNVERIFIED: (*_TASK, "firmware_id"),
    FindingType.DEVICE_NOT_FOUND: _DEVICE,
}
_KNOWN = pa.array(list(KEY_COLUMNS), pa.string())


def finding_keys(findings: pa.Table) -> pa.Array:
    """The key of every finding (a string array, in row order). A key met again in the
    same table gets `#2`, `#3`... in row order, so two findings stay two."""
    types = findings["finding_type"]
    parts = ["[", _json(types)]
    for column in ANY_KEY:
        using = [t for t, columns in KEY_COLUMNS.items() if column in columns]
        included = pc.or_(
            pc.is_in(types, pa.array(using, pa.string())),
            pc.invert(pc.is_in(types, _KNOWN)),
        )
        value = pc.binary_join_element_wise(",", _json(findings[column]), "")
        parts.append(pc.if_else(included, value, ""))
    parts.append("]")
    keys = pc.binary_join_element_wise(*parts, "")
    return _numbered(
        pa.concat_arrays(keys.chunks) if keys.num_chunks else pa.array([], pa.string())
    )


def finding_key(row: Mapping[str, Any]) -> str:
    """The key of one finding given as a mapping (as `finding_keys` would key it alone)."""
    names = ("finding_type", *ANY_KEY)
    table = pa.table({name: pa.array([row.get(name)], pa.string()) for name in names})
    return str(finding_keys(table)[0].as_py())


def _json(column: pa.ChunkedArray | pa.Array) -> pa.ChunkedArray | pa.Array:
    """Each value as a JSON string literal, `null` for a null (pure Arrow, no Python loop)."""
    text = pc.replace_substring(column, "\\", "\\\\")
    text = pc.replace_substring(text, '"', '\\"')
    for code in range(0x20):  # JSON forbids raw control characters in a string
        text = pc.replace_substring(text, chr(code), f"\\u{code:04x}")
    quoted = pc.binary_join_element_wise('"', text, '"', "")
    return pc.fill_null(quoted, "null")


def _numbered(keys: pa.Array) -> pa.Array:
    counts = pc.value_counts(keys)
    repeated = counts.filter(pc.greater(counts.field("counts"), 1)).field("values")
    if len(repeated) == 0:
        return keys
    # Rare (two findings alike in every identifying column): only then go through Python.
    values = keys.to_pylist()
    seen: dict[str, int] = {}
    for index in pc.indices_nonzero(pc.is_in(keys, repeated)).to_pylist():
        key = values[index]
        seen[key] = seen.get(key, 0) + 1
        if seen[key] > 1:
            values[index] = f"{key}#{seen[key]}"
    return pa.array(values, pa.string())
