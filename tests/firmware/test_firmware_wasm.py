"""The firmware's 32-bit paths on a 32-bit MicroPython: the WebAssembly port (npm
`@micropython/micropython-webassembly-pyscript`, run by node), whose small ints are 31-bit
and whose ticks wrap at 2^30, as an ESP32's. It has no sockets and no `machine`: the checks
that run there are the clock, the telemetry encoding, the simulated sensors, the Ed25519
verifier and the seal. A sealed payload must be the same bytes on both ports.

node, npm or the package missing is a failure saying how to get them, never a skip.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from support.hostboards import RUNNER, micropython_binary
from support.paths import REPO
from urbanpulse.contract.sealed import check_mac, digest, genesis

PACKAGE = "@micropython/micropython-webassembly-pyscript@1.27.0"
RUN = REPO / "tests" / "wasm" / "run.mjs"
MODULES = ("check_clock", "check_telemetry", "check_sim", "check_ed25519", "check_seal")
KEY = bytes.fromhex("00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff")


@pytest.fixture(scope="session")
def wasm_port(request: pytest.FixtureRequest) -> Path:
    for tool in ("node", "npm"):
        if shutil.which(tool) is None:
            pytest.fail(f"`{tool}` not found: run `make setup` (Debian nodejs, npm)",
                        pytrace=False)
    cache = Path(request.config.cache.mkdir("micropython-wasm-1.27.0"))
    port = cache / "node_modules/@micropython/micropython-webassembly-pyscript/micropython.mjs"
    if not port.is_file():
        done = subprocess.run(["npm", "install", "--prefix", str(cache), "--no-audit",
                               "--no-fund", "--loglevel=error", PACKAGE], capture_output=True,
                              text=True, timeout=600, check=False)
        if done.returncode != 0:
            pytest.fail(f"npm install {PACKAGE} failed (is the npm registry reachable?):\n"
                        f"{done.stderr[-2000:]}", pytrace=False)
    return port


def run_wasm(port: Path, module: str) -> str:
    done = subprocess.run(["node", str(RUN), module], capture_output=True, text=True,
                          timeout=600, check=False, cwd=REPO,
                          env={"PATH": "/usr/bin:/bin", "URBANPULSE_WASM_MICROPYTHON": str(port)})
    return done.stdout + done.stderr


@pytest.mark.parametrize("module", MODULES)
def test_checks_pass_on_the_32_bit_port(wasm_port: Path, module: str) -> None:
    out = run_wasm(wasm_port, module)
    assert "PORT maxsize=2147483647 ticks_period=1073741824" in out, out[:2000]
    assert "FAIL" not in out and f"{module}: " in out and " 0 failed" in out, out[:4000]


def test_a_sealed_payload_is_the_same_bytes_on_both_ports(wasm_port: Path,
                                                         tmp_path: Path) -> None:
    wasm = run_wasm(wasm_port, "check_seal")
    unix = subprocess.run([micropython_binary(), str(RUNNER), "check_seal"],
                          capture_output=True, text=True, timeout=120, cwd=REPO, check=False,
                          env={**os.environ, "URBANPULSE_TEST_TMP": str(tmp_path)}).stdout

    def payloads(text: str) -> list[bytes]:
        return [line[8:].encode() for line in text.splitlines() if line.startswith("PAYLOAD ")]

    assert payloads(wasm) == payloads(unix) and len(payloads(unix)) == 3, (wasm, unix)
    prev = genesis("air-wasm-01")
    for p in payloads(unix):
        assert check_mac(p, KEY) and f'"prev":"{prev.hex()}"'.encode() in p, p
        prev = digest(p)
