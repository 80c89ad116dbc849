"""The firmware's device kinds, and the config keys it changes only with "unsafe", are the
gateway's.

The firmware is MicroPython code (its modules import ``machine`` and friends), so its
``KINDS`` and ``UNSAFE`` are read from the source with ``ast`` rather than imported.
"""

from __future__ import annotations

import ast
from pathlib import Path

from support.paths import REPO
from urbanpulse.contract.signing import FIXED_CONFIG_KEYS, UNSAFE_CONFIG_KEYS
from urbanpulse.contract.vocabulary import KINDS

FIRMWARE = REPO / "firmware" / "urbanpulse_fw"


def _kinds_assignments() -> list[tuple[Path, object]]:
    """(file, value) of every module-level ``KINDS = ...`` in the firmware."""
    found = []
    for path in sorted(FIRMWARE.rglob("*.py")):
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            if (isinstance(node, ast.Assign) and len(node.targets) == 1
                    and isinstance(node.targets[0], ast.Name) and node.targets[0].id == "KINDS"):
                found.append((path, ast.literal_eval(node.value)))
    return found


def test_firmware_defines_kinds_once() -> None:
    found = _kinds_assignments()
    assert [p.relative_to(FIRMWARE).as_posix() for p, _ in found] == ["sim/__init__.py"]


def test_firmware_kinds_are_the_gateway_vocabulary() -> None:
    ((_, kinds),) = _kinds_assignments()
    assert isinstance(kinds, tuple)
    assert set(kinds) == set(KINDS)
    assert kinds == tuple(KINDS), "same order as the gateway's vocabulary"


def _cfgtrial(name: str) -> object:
    tree = ast.parse((FIRMWARE / "cfgtrial.py").read_text(encoding="utf-8"))
    (value,) = [ast.literal_eval(node.value) for node in tree.body
                if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name)
                and node.targets[0].id == name]
    return value


def test_firmware_unsafe_config_keys_are_the_gateways() -> None:
    # The operator's `cmd send config --unsafe` and the board's refusal name the same keys;
    # the keys no command changes, likewise.
    assert _cfgtrial("UNSAFE") == UNSAFE_CONFIG_KEYS
    assert _cfgtrial("FIXED") == FIXED_CONFIG_KEYS
