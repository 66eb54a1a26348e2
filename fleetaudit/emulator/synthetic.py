"""A deterministic, realistic fleet of any size, derived from (seed, device index) on demand.

Nothing is stored per device: the device name `dev-0000123` carries its index, the IotId
is the index scrambled by an invertible affine map and encoded in base 62 (with a check),
and every module version and task is a pure function of (seed, index). A million-device
fleet therefore costs no memory beyond the cancel overlay the base class keeps.

What the fleet contains, so audits have something to find:
- five products with `default` plus custom modules (ble, wifi, mcu, zigbee); per
  (product, module) a version ladder where most devices run the majority version, some
  straggle on older ones and a few run ahead (the ladder has `x.9.1` < `x.10.0`);
- about 1 device in 500 reporting 250 modules (more than one page of 200);
- firmware in every status (-1..3) and both types, two jobs per firmware covering every
  job status and type;
- about 12% of devices with an unfinished task in one of the four statuses, aged from
  minutes to weeks, some with a src_version that does not match the device, some whose
  dest_version the device already runs, about 1% with a duplicate task, and terminal
  tasks besides;
- about 1% of the listed devices that do not exist on the platform.

A job's tasks (ListOTATaskByJob) come from the same derivation: the first such listing scans
the indices once and keeps, per job, the indices of the devices with a task in it (4 bytes
per task, nothing per device without one); every listing then derives those devices' tasks
again, so a cancel shows in both listings at once.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterator
from functools import lru_cache

from fleetaudit.emulator import facts
from fleetaudit.emulator.fleet import Fleet, FleetDevice, FleetFirmware, FleetJob, FleetTask

_MASK64 = (1 << 64) - 1
_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_DIGIT = {c: i for i, c in enumerate(_ALPHABET)}

# IotId payload: index -> (index * _MUL + _ADD) mod 2**48, invertible because _MUL is odd.
_BITS = 48
_MUL = 0x5DEECE66D
_ADD = 0xB5F3_21A7
_MUL_INV = pow(_MUL, -1, 1 << _BITS)
_PAYLOAD_LEN = 9  # 62**9 > 2**48

_PRODUCTS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("SmartPlug", ("default", "wifi")),
    ("BulbColor", ("default", "ble", "wifi")),
    ("Thermostat", ("default", "mcu", "wifi")),
    ("DoorSensor", ("default", "ble")),
    ("GatewayHub", ("default", "wifi", "zigbee", "mcu")),
)
_UNFINISHED = facts.UNFINISHED_STATUSES
_TERMINAL = facts.TERMINAL_STATUSES
_FIRMWARE_STATUSES = (-1, 0, 1, 2, 3)
_JOB_STATUSES = ("PLANNED", "IN_PROGRESS", "COMPLETED", "CANCELED")
_SELECTIONS = ("ALL", "SPECIFIC", "GRAY")
_MINUTE_MS = 60_000
_AGES_MS = (5, 45, 6 * 60, 2 * 1440, 9 * 1440, 25 * 1440)  # in minutes, scaled below
_MAJORITY = 3  # index in the version ladder most devices run
_BIG_MODULE_COUNT = 250
_TASK_DESCS = {"FAILED": "The device reported a failed upgrade.", "CANCELED": "Cancelled."}
_TIMEOUTS_MIN = (None, 60, 1440)  # a job's upgrade timeout, by job
_JOB_ID_LEN = 17  # "1836" + firmware id (6) + job ordinal (3) + "4077"


def _mix(*parts: int) -> int:
    """A 64-bit hash of integers (splitmix64 rounds): fast, stable across runs and platforms."""
    x = 0x9E3779B97F4A7C15
    for part in parts:
        x = ((x ^ (part & _MASK64)) * 0xBF58476D1CE4E5B9) & _MASK64
        x ^= x >> 31
        x = (x * 0x94D049BB133111EB) & _MASK64
        x ^= x >> 29
    return x


def _base62(value: int, width: int) -> str:
    chars = []
    for _ in range(width):
        value, digit = divmod(value, 62)
        chars.append(_ALPHABET[digit])
    return "".join(reversed(chars))


def _unbase62(text: str) -> int | None:
    value = 0
    for char in text:
        digit = _DIGIT.get(char)
        if digit is None:
            return None
        value = value * 62 + digit
    return value


def version_ladder(product: int, module: int) -> tuple[str, ...]:
    """The five versions of one (product, module), oldest first; index 3 is the majority."""
    major = 1 + (product + module) % 3
    return (f"{major}.8.0", f"{major}.9.1", f"{major}.10.0", f"{major}.10.2", f"{major}.11.0")


def _task_module(h: int, module_count: int) -> int:
    """Which module a device's tasks upgrade: mostly `default`."""
    return 0 if (h >> 10) % 10 < 6 else (h >> 14) % module_count


def _unfinished_dest(rung: int, h: int) -> int:
    """The ladder rung an unfinished task upgrades to."""
    if (h >> 20) % 15 == 1 and rung > 0:
        return rung  # already applied: the device runs the target version
    return _MAJORITY if rung < _MAJORITY else 4


def firmware_id(product: int, module: int, dest: int, delta: int) -> str:
    """The id of the firmware upgrading (product, module) to ladder[dest]; delta is 0 or 1."""
    return str(100_000 + product * 1000 + module * 100 + dest * 10 + delta)


class SyntheticFleet(Fleet):
    """`size` devices derived from `seed`, with task ages relative to `now_ms`."""

    def __init__(self, size: int, seed: int = 0, now_ms: int = 1_731_974_400_000) -> None:
        super().__init__()
        self.size = size
        self.seed = seed
        self.now_ms = now_ms
        self._width = max(7, len(str(max(size - 1, 0))))
        self._iot_prefix = _base62(_mix(seed, 101), 11) + "ota"
        self.product_keys = tuple(
            "a1" + _base62(_mix(seed, 202, p), 9) for p in range(len(_PRODUCTS))
        )
        self._product_index = {pk: p for p, pk in enumerate(self.product_keys)}
        # Devices are usually asked about several times in a row (modules, tasks, jobs).
        self._state = lru_cache(maxsize=4096)(self._derive)
        self._job_devices: dict[str, array[int]] | None = None

    # -- identity -------------------------------------------------------------------------

    def device_name(self, index: int) -> str:
        """The name of the device with this index."""
        return f"dev-{index:0{self._width}d}"

    def iot_id(self, index: int) -> str:
        """The IotId of the device with this index (reversible, no table)."""
        scrambled = (index * _MUL + _ADD) & ((1 << _BITS) - 1)
        check = _base62(_mix(self.seed, scrambled) % 3844, 2)
        return self._iot_prefix + _base62(scrambled, _PAYLOAD_LEN) + check

    def _index_from_iot_id(self, iot_id: str) -> int | None:
        prefix_len = len(self._iot_prefix)
        if len(iot_id) != prefix_len + _PAYLOAD_LEN + 2 or not iot_id.startswith(self._iot_prefix):
            return None
        scrambled = _unbase62(iot_id[prefix_len : prefix_len + _PAYLOAD_LEN])
        if scrambled is None or scrambled >> _BITS:
            return None
        if iot_id[-2:] != _base62(_mix(self.seed, scrambled) % 3844, 2):
            return None
        index = ((scrambled - _ADD) * _MUL_INV) & ((1 << _BITS) - 1)
        return index if index < self.size else None

    def _index_from_name(self, device_name: str) -> int | None:
        digits = device_name[4:]
        if not device_name.startswith("dev-") or len(digits) != self._width:
            return None
        if not digits.isascii() or not digits.isdigit():
            return None
        index = int(digits)
        return index if index < self.size else None

    def _product_of(self, index: int) -> int:
        return _mix(self.seed, index, 2) % len(_PRODUCTS)

    def exists(self, index: int) -> bool:
        """Whether the listed device with this index exists on the platform (~99%)."""
        return _mix(self.seed, index, 1) % 100 != 0

    # -- Fleet ----------------------------------------------------------------------------

    def device(self, product_key: str, device_name: str) -> FleetDevice | None:
        index = self._index_from_name(device_name)
        if index is None or self.product_keys[self._product_of(index)] != product_key:
            return None
        return self._device_at(index)

    def device_by_iot_id(self, iot_id: str) -> FleetDevice | None:
        index = self._index_from_iot_id(iot_id)
        return None if index is None else self._device_at(index)

    def product_exists(self, product_key: str) -> bool:
        return product_key in self._product_index

    def firmware(self, firmware_id: str) -> FleetFirmware | None:
        parts = self._firmware_parts(firmware_id)
        return None if parts is None else self._make_firmware(*parts)

    def product_firmware(self, product_key: str | None) -> list[FleetFirmware]:
        products = range(len(_PRODUCTS))
        if product_key is not None:
            p = self._product_index.get(product_key)
            products = range(0) if p is None else range(p, p + 1)
        return [
            self._make_firmware(p, m, dest, delta)
            for p in products
            for m in range(len(_PRODUCTS[p][1]))
            for dest in range(1, 5)
            for delta in (0, 1)
        ]

    def job(self, job_id: str) -> FleetJob | None:
        if len(job_id) != _JOB_ID_LEN or not job_id.startswith("1836"):
            return None
        firmware_id = job_id[4:10]
        return next((j for j in self._jobs(firmware_id) if j.job_id == job_id), None)

    def _base_job_tasks(self, job: FleetJob) -> list[FleetTask]:
        if self._job_devices is None:
            self._job_devices = self._index_jobs()
        tasks: list[FleetTask] = []
        for index in self._job_devices.get(job.job_id, ()):
            state = self._state(index)
            if state is not None:
                tasks.extend(t for t in state[1] if t.job_id == job.job_id)
        return tasks

    def _index_jobs(self) -> dict[str, array[int]]:
        """Job id -> the indices of the devices with a task in it, from one scan."""
        index: dict[str, array[int]] = {}
        for i in range(self.size):
            h = _mix(self.seed, i, 5)
            # The cheap test first: most devices have no task, and most exist.
            if h % 1000 >= 250 or not self.exists(i):
                continue
            for job_id in self._task_job_ids(i, self._product_of(i), h):
                index.setdefault(job_id, array("I")).append(i)
        return index

    def _task_job_ids(self, index: int, p: int, h: int) -> set[str]:
        """The jobs of the device's tasks without building them (the index's scan is 1M
        devices long): `_derive_tasks` branch by branch, through the same helpers."""
        r = h % 1000
        m = _task_module(h, len(_PRODUCTS[p][1]))
        rung = self._rung(index, m)
        jobs = set()
        if r < 132:
            jobs.add(self._job_id(firmware_id(p, m, _unfinished_dest(rung, h), 0), 1))
            if r >= 120:
                jobs.add(self._job_id(firmware_id(p, m, _unfinished_dest(rung, h >> 7), 0), 0))
        if r < 30 or 132 <= r < 250:
            jobs.add(self._job_id(firmware_id(p, m, max(rung, 1), 0), 1))
        return jobs

    def iter_device_list(self) -> Iterator[tuple[str, str, str]]:
        for index in range(self.size):
            pk = self.product_keys[self._product_of(index)]
            yield pk, self.device_name(index), self.iot_id(index)

    def _base_tasks(self, device: FleetDevice) -> list[FleetTask]:
        index = self._index_from_name(device.device_name)
        if index is None:
            return []
        state = self._state(index)
        return [] if state is None else state[1]

    def _jobs(self, firmware_id: str) -> list[FleetJob]:
        parts = self._firmware_parts(firmware_id)
        if parts is None:
            return []
        fw = self._make_firmware(*parts)
        ordinal = int(firmware_id)
        jobs = []
        for j in (0, 1):
            verify = j == 0 and fw.status in (1, 2, 3)
            created = fw.utc_create_ms + (j + 1) * 3_600_000
            jobs.append(
                FleetJob(
                    job_id=self._job_id(firmware_id, j),
                    firmware_id=firmware_id,
                    product_key=fw.product_key,
                    status=_JOB_STATUSES[(ordinal + j) % 4],
                    job_type="VERIFY_FIRMWARE" if verify else "UPGRADE_FIRMWARE",
                    target_selection=_SELECTIONS[(ordinal + j) % 3],
                    selection_type=("STATIC", "DYNAMIC")[j],
                    utc_create_ms=created,
                    utc_modified_ms=created + 60_000,
                    timeout_minutes=_TIMEOUTS_MIN[(ordinal + j) % 3],
                )
            )
        return jobs

    # -- derivation -----------------------------------------------------------------------

    def _device_at(self, index: int) -> FleetDevice | None:
        state = self._state(index)
        return None if state is None else state[0]

    def _derive(self, index: int) -> tuple[FleetDevice, list[FleetTask]] | None:
        if not self.exists(index):
            return None
        p = self._product_of(index)
        module_names = _PRODUCTS[p][1]
        rungs = [self._rung(index, m) for m in range(len(module_names))]
        modules = {name: version_ladder(p, m)[rungs[m]] for m, name in enumerate(module_names)}
        if _mix(self.seed, index, 4) % 500 == 0:
            for k in range(_BIG_MODULE_COUNT - len(modules)):
                modules[f"ext-{k:03d}"] = f"1.0.{k % 3}"
        device = FleetDevice(
            self.product_keys[p], self.device_name(index), self.iot_id(index), modules
        )
        return device, self._derive_tasks(index, p, rungs)

    def _rung(self, index: int, module: int) -> int:
        r = _mix(self.seed, index, 3, module) % 1000
        if r < 780:
            return _MAJORITY
        if r < 860:
            return 2
        if r < 920:
            return 1
        if r < 970:
            return 0
        return 4

    def _derive_tasks(self, index: int, p: int, rungs: list[int]) -> list[FleetTask]:
        h = _mix(self.seed, index, 5)
        r = h % 1000
        tasks: list[FleetTask] = []
        m = _task_module(h, len(rungs))
        if r < 132:
            tasks.append(self._unfinished_task(index, p, m, rungs[m], h, slot=0, job=1))
            if r >= 120:  # a duplicate: same module and firmware, another job
                tasks.append(self._unfinished_task(index, p, m, rungs[m], h >> 7, slot=1, job=0))
        if r < 30 or 132 <= r < 250:
            tasks.append(self._terminal_task(index, p, m, rungs[m], h >> 21))
        return tasks

    def _unfinished_task(
        self, index: int, p: int, m: int, rung: int, h: int, *, slot: int, job: int
    ) -> FleetTask:
        ladder = version_ladder(p, m)
        dest = _unfinished_dest(rung, h)
        src = ladder[rung]
        if (h >> 24) % 10 == 0:
            src = ladder[(rung + 2) % 5]  # the platform thinks the device runs another version
        age_ms = _AGES_MS[(h >> 28) % len(_AGES_MS)] * _MINUTE_MS
        age_ms = age_ms // 2 + (h >> 32) % max(age_ms, 1)
        status = _UNFINISHED[(h >> 40) % 4]
        return self._task(index, p, m, dest, slot, job, status, src, age_ms)

    def _terminal_task(self, index: int, p: int, m: int, rung: int, h: int) -> FleetTask:
        src = version_ladder(p, m)[max(rung - 1, 0)]
        age_ms = (30 + h % 60) * 1440 * _MINUTE_MS
        status = _TERMINAL[(h >> 8) % 3]
        return self._task(index, p, m, max(rung, 1), 2, 1, status, src, age_ms)

    def _task(
        self,
        index: int,
        p: int,
        m: int,
        dest: int,
        slot: int,
        job: int,
        status: str,
        src: str,
        age_ms: int,
    ) -> FleetTask:
        fid = firmware_id(p, m, dest, 0)
        job_id = self._job_id(fid, job)
        created = self.now_ms - age_ms
        modified = created if status == "CONFIRM" else created + age_ms // 3
        progress = 0
        if status == "IN_PROGRESS":
            progress = _mix(self.seed, index, slot, 9) % 100
        elif status == "SUCCEEDED":
            progress = 100
        return FleetTask(
            task_id=f"{job_id[:10]}{index:09d}{slot}",
            job_id=job_id,
            firmware_id=fid,
            product_key=self.product_keys[p],
            device_name=self.device_name(index),
            module_name=_PRODUCTS[p][1][m],
            src_version=src,
            dest_version=version_ladder(p, m)[dest],
            status=status,
            utc_create_ms=created,
            utc_modified_ms=modified,
            product_name=_PRODUCTS[p][0],
            progress=progress,
            task_desc=_TASK_DESCS.get(status, ""),
        )

    @staticmethod
    def _job_id(firmware_id: str, j: int) -> str:
        return f"1836{firmware_id}{j:03d}4077"

    @staticmethod
    def _firmware_parts(fid: str) -> tuple[int, int, int, int] | None:
        if not fid.isascii() or not fid.isdigit() or len(fid) != 6:
            return None
        value = int(fid) - 100_000
        p, rest = divmod(value, 1000)
        m, rest = divmod(rest, 100)
        dest, delta = divmod(rest, 10)
        if p >= len(_PRODUCTS) or m >= len(_PRODUCTS[p][1]) or not 1 <= dest <= 4 or delta > 1:
            return None
        return p, m, dest, delta

    def _make_firmware(self, p: int, m: int, dest: int, delta: int) -> FleetFirmware:
        fid = firmware_id(p, m, dest, delta)
        ladder = version_ladder(p, m)
        created = self.now_ms - (70 - dest * 12) * 1440 * _MINUTE_MS
        module = _PRODUCTS[p][1][m]
        h = _mix(self.seed, int(fid))
        return FleetFirmware(
            firmware_id=fid,
            firmware_name=f"{_PRODUCTS[p][0]}-{module}-{ladder[dest]}{'-delta' if delta else ''}",
            product_key=self.product_keys[p],
            product_name=_PRODUCTS[p][0],
            module_name=module,
            src_version=ladder[dest - 1] if delta else "",
            dest_version=ladder[dest],
            status=_FIRMWARE_STATUSES[(p + m + dest + delta) % 5],
            type=delta,
            sign_method=("MD5", "SHA256")[dest % 2],
            firmware_sign=f"{h:016x}{_mix(h):016x}",
            firmware_size=100_000 + h % 4_000_000,
            verify_progress=(0, 100, 50)[h % 3],
            firmware_url=(
                f"https://ota.example.com/fw/{self.product_keys[p]}/{fid}.bin"
                f"?Expires={self.now_ms // 1000 + 3600}&OSSAccessKeyId=LTAIdemo{h % 9999:04d}"
                f"&Signature={_base62(h, 11)}%3D"
            ),
            utc_create_ms=created,
            utc_modified_ms=created + 3_600_000,
            firmware_desc=f"{module} firmware {ladder[dest]}",
        )
