"""Device lists in CSV, JSONL and Parquet: read, deduplicated, and refused with line and column."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from fleetaudit.devices import MAX_FIELD_CHARS, MAX_LINE_BYTES, read_devices, validate_device_list
from fleetaudit.errors import InputError
from fleetaudit.models import Device

SAMPLES = Path(__file__).parent.parent / "sample_inputs"

EXPECTED = [
    Device("pk1", "dev-1", None),
    Device("pk1", "dev-2", "iot-2"),
    Device("pk2", "dev-1", None),
]


def write_csv(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "devices.csv"
    path.write_bytes(text.encode("utf-8"))
    return path


def write_jsonl(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "devices.jsonl"
    path.write_bytes(text.encode("utf-8"))
    return path


def write_parquet(tmp_path: Path, columns: dict[str, list[object]]) -> Path:
    path = tmp_path / "devices.parquet"
    pq.write_table(pa.table(columns), path, row_group_size=2)
    return path


@pytest.mark.parametrize(
    "text",
    [
        "product_key,device_name,iot_id\npk1,dev-1,\npk1,dev-2,iot-2\npk2,dev-1,\n",
        "ProductKey,DeviceName,IotId\npk1,dev-1,\npk1,dev-2,iot-2\npk2,dev-1,\n",
        "PRODUCT_KEY,devicename,iotid,site\npk1,dev-1,,x\npk1,dev-2,iot-2,y\npk2,dev-1,,z\n",
        "iot_id,device_name,product_key\n,dev-1,pk1\r\niot-2,dev-2,pk1\r\n,dev-1,pk2\r\n",
        "\ufeffproduct_key,device_name,iot_id\npk1,dev-1,\n\npk1,dev-2,iot-2\npk2,dev-1,\n",
        "product_key,device_name,iot_id\n pk1 , dev-1 , \n\n,,\npk1,dev-2,iot-2\npk2,dev-1,\n",
    ],
    ids=["snake", "pascal", "mixed-case-extra", "reordered-crlf", "bom-blank", "spaces"],
)
def test_csv_reads_devices(tmp_path: Path, text: str) -> None:
    """CSV headers match case-insensitively with aliases; blanks, BOM and spaces are tolerated."""
    assert list(read_devices(write_csv(tmp_path, text))) == EXPECTED


@pytest.mark.parametrize(
    "text",
    [
        '{"product_key":"pk1","device_name":"dev-1"}\n'
        '{"ProductKey":"pk1","DeviceName":"dev-2","IotId":"iot-2","x":1}\n'
        '{"productKey":"pk2","deviceName":"dev-1","iotId":null}\n',
        '\n  \n{"product_key":"pk1","device_name":" dev-1 ","iot_id":""}\n'
        '{"product_key":"pk1","device_name":"dev-2","iot_id":"iot-2"}\n\n'
        '{"product_key":"pk2","device_name":"dev-1"}',
    ],
    ids=["aliases", "blanks-and-no-final-newline"],
)
def test_jsonl_reads_devices(tmp_path: Path, text: str) -> None:
    """JSONL objects with any key alias, null or empty iot_id and blank lines are read."""
    assert list(read_devices(write_jsonl(tmp_path, text))) == EXPECTED


def test_parquet_reads_devices_in_batches(tmp_path: Path) -> None:
    """A Parquet list with alias columns and several row groups is read in order."""
    path = write_parquet(
        tmp_path,
        {
            "ProductKey": ["pk1", "pk1", "pk2"],
            "DeviceName": ["dev-1", "dev-2", "dev-1"],
            "IotId": [None, "iot-2", ""],
            "extra": [1, 2, 3],
        },
    )
    assert list(read_devices(path)) == EXPECTED


def test_parquet_without_iot_id(tmp_path: Path) -> None:
    """A Parquet list without an iot_id column gives devices with no iot_id."""
    path = write_parquet(tmp_path, {"product_key": ["pk1"], "device_name": ["dev-1"]})
    assert list(read_devices(path)) == [Device("pk1", "dev-1", None)]


@pytest.mark.parametrize("suffix", ["csv", "jsonl", "parquet"])
def test_duplicates_are_yielded_once(tmp_path: Path, suffix: str) -> None:
    """The same product_key + device_name is audited once, whatever the format."""
    rows = [("pk1", "a"), ("pk1", "b"), ("pk1", "a"), ("pk2", "a"), ("pk1", "b")]
    if suffix == "csv":
        path = write_csv(
            tmp_path, "product_key,device_name\n" + "".join(f"{p},{d}\n" for p, d in rows)
        )
    elif suffix == "jsonl":
        lines = "".join(f'{{"product_key":"{p}","device_name":"{d}"}}\n' for p, d in rows)
        path = write_jsonl(tmp_path, lines)
    else:
        path = write_parquet(
            tmp_path, {"product_key": [p for p, _ in rows], "device_name": [d for _, d in rows]}
        )
    assert [(d.product_key, d.device_name) for d in read_devices(path)] == [
        ("pk1", "a"),
        ("pk1", "b"),
        ("pk2", "a"),
    ]


def test_validate_counts_rows_and_unique_devices(tmp_path: Path) -> None:
    """validate_device_list counts the rows and the distinct devices among them."""
    path = write_csv(tmp_path, "product_key,device_name\npk,a\npk,b\npk,a\n")
    check = validate_device_list(path)
    assert (check.rows, check.unique, check.has_duplicates) == (3, 2, True)


def test_reading_without_dedupe_keeps_every_row(tmp_path: Path) -> None:
    """unique=False yields every row, for a caller that knows there are no duplicates."""
    path = write_csv(tmp_path, "product_key,device_name\npk,a\npk,a\n")
    assert [d.device_name for d in read_devices(path, unique=False)] == ["a", "a"]


@pytest.mark.parametrize("name", ["devices.csv", "devices.jsonl"])
def test_sample_device_lists_are_valid(name: str) -> None:
    """The shipped sample lists read cleanly and hold 10-20 unique devices."""
    assert 10 <= validate_device_list(SAMPLES / name).unique <= 20


@pytest.mark.parametrize(
    ("text", "line", "column", "problem"),
    [
        ("device_name,iot_id\na,b\n", 1, "product_key", "missing required column"),
        ("product_key,iot_id\na,b\n", 1, "device_name", "missing required column"),
        ("", 1, None, "empty file"),
        ("product_key,device_name\npk,a\n,b\n", 3, "product_key", "empty value"),
        ("ProductKey,DeviceName\npk,a\n\npk,  \n", 4, "DeviceName", "empty value"),
        ("product_key,device_name\npk,a\npk,b,c\n", 3, None, "expected 2 fields, found 3"),
        ("product_key,device_name,iot_id\npk,a\n", 2, None, "expected 3 fields, found 2"),
        ("product_key,ProductKey,device_name\n", 1, "ProductKey", "give it once"),
        ('product_key,device_name\npk,"a\n', 2, None, "bad CSV"),
    ],
)
def test_csv_errors_name_line_and_column(
    tmp_path: Path, text: str, line: int, column: str | None, problem: str
) -> None:
    """Each malformed CSV raises InputError naming the file, line and column."""
    with pytest.raises(InputError, match=problem) as caught:
        validate_device_list(write_csv(tmp_path, text))
    assert (caught.value.line, caught.value.column) == (line, column)
    assert "devices.csv" in str(caught.value)


@pytest.mark.parametrize(
    ("text", "line", "column", "problem"),
    [
        ('{"product_key":"pk","device_name":"a"}\n{"product_key":"pk"\n', 2, None, "invalid JSON"),
        ('["pk","a"]\n', 1, None, "expected a JSON object, found list"),
        ('\n{"device_name":"a"}\n', 2, "product_key", "missing required column"),
        ('{"product_key":"pk","device_name":7}\n', 1, "device_name", "must be a string, found int"),
        ('{"product_key":"pk","device_name":"a","iot_id":1}\n', 1, "iot_id", "must be a string"),
        ('{"product_key":null,"device_name":"a"}\n', 1, "product_key", "empty value"),
        ('{"product_key":"pk","ProductKey":"pk","device_name":"a"}\n', 1, "ProductKey", "once"),
    ],
)
def test_jsonl_errors_name_line_and_column(
    tmp_path: Path, text: str, line: int, column: str | None, problem: str
) -> None:
    """Each malformed JSONL line raises InputError naming the file, line and column."""
    with pytest.raises(InputError, match=problem) as caught:
        validate_device_list(write_jsonl(tmp_path, text))
    assert (caught.value.line, caught.value.column) == (line, column)


@pytest.mark.parametrize(
    ("name", "data", "line"),
    [
        ("devices.csv", b"product_key,device_name\npk,a\npk,caf\xe9\n", 3),
        ("devices.jsonl", b'{"product_key":"pk","device_name":"a"}\n{"product_key":"\xff"}\n', 2),
    ],
)
def test_non_utf8_names_its_line(tmp_path: Path, name: str, data: bytes, line: int) -> None:
    """A CSV or JSONL line that is not UTF-8 is reported with its line number."""
    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(InputError, match="not valid UTF-8") as caught:
        validate_device_list(path)
    assert caught.value.line == line


@pytest.mark.parametrize(
    ("columns", "line", "column", "problem"),
    [
        ({"device_name": ["a"]}, None, "product_key", "missing required column"),
        ({"product_key": ["pk"], "device_name": [1]}, None, "device_name", "must be a string"),
        (
            {"product_key": ["pk", "pk", "pk"], "device_name": ["a", "b", None]},
            3,
            "device_name",
            "empty value",
        ),
    ],
)
def test_parquet_errors_name_row_and_column(
    tmp_path: Path, columns: dict[str, list[object]], line: int | None, column: str, problem: str
) -> None:
    """Each malformed Parquet list raises InputError naming the row and column."""
    with pytest.raises(InputError, match=problem) as caught:
        validate_device_list(write_parquet(tmp_path, columns))
    assert (caught.value.line, caught.value.column) == (line, column)


def test_not_parquet_bytes(tmp_path: Path) -> None:
    """A .parquet file that is not Parquet is an InputError naming it."""
    path = tmp_path / "devices.parquet"
    path.write_bytes(b"product_key,device_name\n")
    with pytest.raises(InputError, match="not a readable Parquet file"):
        validate_device_list(path)


@pytest.mark.parametrize("name", ["devices.csv", "devices.jsonl", "devices.parquet"])
def test_missing_file(tmp_path: Path, name: str) -> None:
    """A missing device list is an InputError saying it cannot be read."""
    with pytest.raises(InputError, match="cannot read"):
        validate_device_list(tmp_path / name)


def test_unknown_extension(tmp_path: Path) -> None:
    """A device list with an unknown extension is refused before reading."""
    with pytest.raises(InputError, match=r"unknown extension '\.xlsx'"):
        read_devices(tmp_path / "devices.xlsx")


_LONG = "x" * (MAX_LINE_BYTES + 1)
_NAME = "n" * (MAX_FIELD_CHARS + 1)
_ROW = '{"product_key":"pk","device_name":"%s"}\n'


@pytest.mark.parametrize(
    ("name", "text", "line", "column", "problem"),
    [
        ("devices.csv", f"product_key,device_name\npk,a\npk,{_LONG}\n", 3, None, "line longer"),
        ("devices.csv", f"product_key,device_name,{_LONG}\n", 1, None, "line longer"),
        ("devices.jsonl", _ROW % "a" + _ROW % _LONG, 2, None, "line longer"),
        ("devices.csv", f"product_key,device_name\npk,{_NAME}\n", 2, "device_name", "longer than"),
        ("devices.jsonl", _ROW % _NAME, 1, "device_name", f"longer than {MAX_FIELD_CHARS}"),
        ("devices.jsonl", _ROW % "d\\u0000x", 1, "device_name", "control character"),
        ("devices.jsonl", _ROW % "d\\nx", 1, "device_name", "control character"),
        # A quoted name across two lines: its row is named by the line it ends on.
        ("devices.csv", 'product_key,device_name\npk,"d\nx"\n', 3, "device_name", "control"),
    ],
)
def test_long_lines_and_bad_names_are_refused(
    tmp_path: Path, name: str, text: str, line: int, column: str | None, problem: str
) -> None:
    """A line over MAX_LINE_BYTES, or a name too long or with a control character, names
    the file, line and column, in CSV and JSONL alike."""
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    with pytest.raises(InputError, match=problem) as caught:
        validate_device_list(path)
    assert (caught.value.line, caught.value.column) == (line, column)
    assert name in str(caught.value)


def test_a_line_of_exactly_the_limit_is_read(tmp_path: Path) -> None:
    """A line of MAX_LINE_BYTES bytes, its newline included, is still a line."""
    header = "product_key,device_name,note\n"
    row = "pk,a,"
    row += "z" * (MAX_LINE_BYTES - len(row) - 1) + "\n"
    path = write_csv(tmp_path, header + row)
    assert [d.device_name for d in read_devices(path)] == ["a"]


def test_parquet_name_too_long_is_refused(tmp_path: Path) -> None:
    """A Parquet value longer than MAX_FIELD_CHARS names its row and column."""
    path = write_parquet(tmp_path, {"product_key": ["pk", "pk"], "device_name": ["a", _NAME]})
    with pytest.raises(InputError, match="longer than") as caught:
        validate_device_list(path)
    assert (caught.value.line, caught.value.column) == (2, "device_name")
