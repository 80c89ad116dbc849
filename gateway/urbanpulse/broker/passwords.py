"""Mosquitto password files: who is in one, and a copy with a user added, written by the
broker's own `mosquitto_passwd` (the password through stdin, never in a process list)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

MOSQUITTO_PASSWD_DIRS = ("/usr/bin", "/usr/sbin", "/usr/local/bin")


class PasswordFileError(RuntimeError):
    """The password file could not be read or written; the message says why."""


def mosquitto_passwd_binary() -> str:
    found = shutil.which("mosquitto_passwd") or shutil.which(
        "mosquitto_passwd", path=os.pathsep.join(MOSQUITTO_PASSWD_DIRS)
    )
    if not found:
        raise PasswordFileError(
            "mosquitto_passwd is not installed (Debian package `mosquitto`); it is needed for "
            "a Mosquitto password file"
        )
    return found


def passwd_users(path: Path) -> set[str]:
    if not path.exists():
        return set()
    users = set()
    for line in path.read_text(encoding="utf-8").splitlines():
        if ":" in line and not line.lstrip().startswith("#"):
            users.add(line.split(":", 1)[0])
    return users


def with_user(path: Path, user: str, password: str, tmp_dir: Path) -> Path:
    """A copy of the password file with the user added (or its password replaced)."""
    staged = tmp_dir / "passwd"
    if path.exists():
        shutil.copyfile(path, staged)
    else:
        staged.touch()
    staged.chmod(0o600)  # Mosquitto 2 warns about password files others can read
    # Without -b, mosquitto_passwd reads the password twice from stdin: it stays out of argv.
    result = subprocess.run(
        [mosquitto_passwd_binary(), str(staged), user],
        input=f"{password}\n{password}\n", capture_output=True, text=True, timeout=30,
        check=False,
    )
    if result.returncode != 0:
        raise PasswordFileError(
            f"mosquitto_passwd failed on {path} (exit {result.returncode}): "
            f"{(result.stderr or result.stdout).strip()}"
        )
    return staged
