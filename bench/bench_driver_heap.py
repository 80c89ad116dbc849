"""Heap the sensor drivers take on a 64 KiB board, against simulated sensors of the same kind.

Run: .venv/bin/python bench/bench_driver_heap.py
Builds the firmware bundle (``mpy-cross`` bytecode, as flashed), then for each kind starts
``micropython -X heapsize=64k`` that, in the order of app.main(), builds that kind's sensors
with sensors.build() and then loads the main loop's modules (app._MODULES: MQTT client,
telemetry, ...): once with ``"type": "sim"`` (the baseline, measured in the same run) and once
with every driver of the kind. Prints the free heap after the build (drivers' code and
objects, and host/hostbus.py; the host's emulated chips are not made yet), after loading the
main loop's modules, and after each sensor was read a few times (the host's emulated chips
loaded too: what a simulated fleet board has); and the resident cost, drivers - sim.
-1: the step ran out of memory (MemoryError).
"""

from __future__ import annotations

import json
import subprocess
import tempfile
from pathlib import Path

from urbanpulse.firmware_bundle import build_bundle, find_tool

DRIVERS: dict[str, list[dict[str, object]]] = {
    "air": [{"type": "bme280"}, {"type": "pms5003"}, {"type": "scd41"}],
    "noise": [{"type": "noise"}],
    "traffic": [{"type": "pulse"}],
    "parking": [{"type": "bay"}],
    "streetlight": [{"type": "lamp"}],
    "water": [{"type": "water", "mount_cm": 600}],
    "soil": [{"type": "soil"}],
}

SCRIPT = """
import gc, sys, time
gc.collect()
out = [gc.mem_free()]
try:
    # The order of app.main(): sensors first (their builder is unloaded), then the main loop's
    # modules.
    from urbanpulse_fw import sensors
    objs, errors = sensors.build(%s, %r, 1, 1, 0)
    if errors:  # e.g. "cannot set up: MemoryError(...)"
        raise MemoryError(errors)
    del sensors
    sys.modules.pop("urbanpulse_fw.sensors", None)
    delattr(sys.modules["urbanpulse_fw"], "sensors")
    gc.collect()
    out.append(gc.mem_free())
    from urbanpulse_fw import app
    for m in app._MODULES:
        gc.collect()
        __import__("urbanpulse_fw." + m)
    del app
    gc.collect()
    out.append(gc.mem_free())
    for i in range(3):
        for s in objs:
            s.poll(time.ticks_ms())
            s.read(1763700000000 + i)
        time.sleep_ms(50)
    gc.collect()
    out.append(gc.mem_free())
except MemoryError:
    pass
print(" ".join(str(x) for x in out))
"""


HOSTBUS = """
import gc
from urbanpulse_fw import app
for m in app._MODULES:  # first, so that its names go into the interpreter's existing pools
    gc.collect()
    __import__("urbanpulse_fw." + m)
gc.collect()
a = gc.mem_free()
import hostbus
gc.collect()
print(a - gc.mem_free())
"""


def measure(micropython: str, bundle: Path, entries: list[dict[str, object]], kind: str,
            cwd: Path) -> tuple[int, int, int, int]:
    result = subprocess.run(
        [micropython, "-X", "heapsize=64k", "-c", SCRIPT % (json.dumps(entries), kind)],
        capture_output=True, text=True, timeout=60, check=False, cwd=cwd,
        env={"MICROPYPATH": f"{bundle / 'host'}:{bundle}:.frozen"},
    )
    if result.returncode != 0:
        raise SystemExit(f"{kind}: {result.stdout}{result.stderr}")
    got = [int(x) for x in result.stdout.split()]
    return tuple(got + [-1] * (4 - len(got)))  # type: ignore[return-value]


def main() -> None:
    micropython = find_tool("micropython")
    if not micropython:
        raise SystemExit("micropython is not installed: run `make setup`")
    with tempfile.TemporaryDirectory() as tmp:
        bundle = build_bundle(Path(tmp) / "bundle", host=True)
        print(f"{'kind':12} {'sensors':>8} {'+loop':>6} {'running':>8} | {'sensors':>8} "
              f"{'+loop':>6} {'running':>8} | {'drv-sim':>7}")
        print(f"{'':12} {'simulated (baseline)':>24} | {'drivers':>24} |  resident")
        for kind, entries in DRIVERS.items():
            _, sim_b, sim_l, sim_r = measure(micropython, bundle, [{"type": "sim"}], kind,
                                             Path(tmp))
            start, drv_b, drv_l, drv_r = measure(micropython, bundle, entries, kind, Path(tmp))
            print(f"{kind:12} {sim_b:8d} {sim_l:6d} {sim_r:8d} | {drv_b:8d} {drv_l:6d} "
                  f"{drv_r:8d} | {sim_b - drv_b:7d}")
        print(f"bytes free of {start} at start (64 KiB heap) after: the sensors are built, the "
              "main loop's modules are loaded, each sensor was read 3 times (the host's "
              "emulated chips loaded); -1 = MemoryError")
        result = subprocess.run(
            [micropython, "-X", "heapsize=64k", "-c", HOSTBUS], capture_output=True, text=True,
            timeout=60, check=True, cwd=tmp,
            env={"MICROPYPATH": f"{bundle / 'host'}:{bundle}:.frozen"})
        print(f"of the resident cost, host/hostbus.py (never on a board): {result.stdout.strip()}"
              " bytes")

if __name__ == "__main__":
    main()
