"""The shipped Mosquitto files are the policy's (the secure stack runs the same lines: the
attacks in tests/service/test_attacks.py are played against them)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from support.paths import REPO


def _config(root: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "urbanpulse", "broker", "config", "--root",
                           str(root), *extra], capture_output=True, text=True, timeout=60,
                          check=False)


def test_the_committed_deploy_files_match_the_policy() -> None:
    result = _config(REPO, "--check")
    assert result.returncode == 0, result.stdout + result.stderr


def test_check_names_a_file_edited_by_hand_and_config_writes_it_back(tmp_path: Path) -> None:
    shutil.copytree(REPO / "deploy" / "mosquitto", tmp_path / "deploy" / "mosquitto")
    acl = tmp_path / "deploy" / "mosquitto" / "urbanpulse.acl"
    acl.write_text(acl.read_text().replace("pattern read city/%u/cmd", "topic readwrite city/#"))
    result = _config(tmp_path, "--check")
    assert result.returncode == 1 and "out of date" in result.stdout and "urbanpulse.acl" in (
        result.stdout)
    assert _config(tmp_path).returncode == 0
    assert _config(tmp_path, "--check").returncode == 0
    assert "topic readwrite city/#" not in acl.read_text()
