"""A firmware release for over-the-air updates: ``urbanpulse ota build`` makes one, ``ota push``
offers it (field/rollout.py), and anyone can check one with ``ota verify``.

A release is a folder:
- ``files/``: the firmware package as the board runs it (``urbanpulse_fw/**.mpy``);
- ``manifest``: every file's size and SHA-256 (contract/ota.py);
- ``release.json``: version, the manifest's SHA-256 and size, the release key's signature
  over them, and that key's public half.

``boot.py`` and ``main.py`` are not in it: they choose and start the firmware, and stay as
flashed over USB, so that a bad release can always be undone.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from urbanpulse.contract import ota
from urbanpulse.contract.signing import public_hex
from urbanpulse.field.bundle import PACKAGE, build_bundle, firmware_source

FILES = "files"
MANIFEST = "manifest"
INFO = "release.json"
_VERSION = re.compile(r'^FW_VERSION = "([0-9A-Za-z.+-]{1,16})"', re.M)


class ReleaseError(RuntimeError):
    """A release that cannot be made or does not hold together; the message says why."""


@dataclass(frozen=True)
class Release:
    folder: Path
    version: str
    manifest: bytes
    files: tuple[tuple[str, bytes], ...]  # (path, content), in manifest order
    signature: str  # hex
    key: str  # the release public key, hex

    @property
    def manifest_sha256(self) -> str:
        return hashlib.sha256(self.manifest).hexdigest()

    @property
    def size(self) -> int:
        return sum(len(c) for _, c in self.files)

    def command_params(self) -> dict[str, object]:
        """The "ota" command's own members."""
        return {"version": self.version, "manifest": self.manifest_sha256,
                "size": len(self.manifest), "release_sig": self.signature}

    def content(self, index: int) -> bytes | None:
        """File ``index`` as the board numbers them: 0 the manifest, i its i-th file."""
        if index == 0:
            return self.manifest
        if 0 < index <= len(self.files):
            return self.files[index - 1][1]
        return None


def source_version(source: Path) -> str:
    match = _VERSION.search((source / PACKAGE / "__init__.py").read_text(encoding="utf-8"))
    if not match:
        raise ReleaseError(f"no FW_VERSION in {source / PACKAGE / '__init__.py'}")
    return match.group(1)


def _mpy_format(data: bytes, name: str) -> str:
    # .mpy header: b"M", the format version, then the sub-version in the low 2 bits.
    if len(data) < 4 or data[0:1] != b"M":
        raise ReleaseError(f"{name} is not a .mpy file")
    return f"{data[1]}.{data[2] & 3}"


def manifest_text(version: str, files: list[tuple[str, bytes]]) -> bytes:
    mpy = {_mpy_format(c, p) for p, c in files if p.endswith(".mpy")}
    if len(mpy) != 1:
        raise ReleaseError(f"the files are not of one .mpy format: {sorted(mpy)}")
    lines = [f"{ota.MANIFEST_MAGIC} {ota.MANIFEST_VERSION} {version} {mpy.pop()}"]
    lines += [f"{len(c)} {hashlib.sha256(c).hexdigest()} {p}" for p, c in files]
    return ("\n".join(lines) + "\n").encode()


def build(out: Path, key: Ed25519PrivateKey, source: Path | None = None) -> Release:
    """Compile the firmware (``source``, default this checkout's) into a signed release in
    ``out`` (which must not exist)."""
    src = source or firmware_source()
    if out.exists():
        raise ReleaseError(f"{out} exists: a release is never overwritten")
    version = source_version(src)
    with tempfile.TemporaryDirectory(prefix="upota-") as tmp:
        bundle = build_bundle(Path(tmp) / "fw", src)
        package = bundle / PACKAGE
        files = [(p.relative_to(bundle).as_posix(), p.read_bytes())
                 for p in sorted(package.rglob("*")) if p.is_file()]
        for path, _ in files:
            if not ota.PATH.fullmatch(path):
                raise ReleaseError(f"{path}: a board takes only paths of a-z 0-9 _ . /")
        manifest = manifest_text(version, files)
        if len(manifest) > ota.MAX_MANIFEST_BYTES:
            raise ReleaseError(f"manifest of {len(manifest)} bytes: boards take at most "
                               f"{ota.MAX_MANIFEST_BYTES}")
        out.mkdir(parents=True)
        shutil.copytree(package, out / FILES / PACKAGE)
    (out / MANIFEST).write_bytes(manifest)
    sha = hashlib.sha256(manifest).hexdigest()
    sig = key.sign(ota.statement(version, sha, len(manifest))).hex()
    info = {"version": version, "manifest_sha256": sha, "manifest_size": len(manifest),
            "release_sig": sig, "release_key": public_hex(key),
            "files": len(files), "bytes": sum(len(c) for _, c in files)}
    (out / INFO).write_text(json.dumps(info, indent=1) + "\n", encoding="utf-8")
    return load(out)


def load(folder: Path, expected_key: str | None = None) -> Release:
    """Read and check a release: the signature (with ``expected_key`` if given, else the key
    it names), the manifest's hash and every file against it. Raises ReleaseError naming
    the first problem."""
    try:
        info = json.loads((folder / INFO).read_text(encoding="utf-8"))
        manifest = (folder / MANIFEST).read_bytes()
        version, sig, key = info["version"], info["release_sig"], info["release_key"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ReleaseError(f"{folder}: not a release ({exc})") from None
    if expected_key is not None and key != expected_key:
        raise ReleaseError(f"{folder}: signed with {key}, not the release key {expected_key}")
    sha = hashlib.sha256(manifest).hexdigest()
    if sha != info.get("manifest_sha256") or len(manifest) != info.get("manifest_size"):
        raise ReleaseError(f"{folder / MANIFEST}: does not match {INFO}")
    try:
        Ed25519PublicKey.from_public_bytes(bytes.fromhex(key)).verify(
            bytes.fromhex(sig), ota.statement(version, sha, len(manifest)))
    except (InvalidSignature, ValueError):
        raise ReleaseError(f"{folder}: the release signature does not verify") from None
    lines = manifest.decode("ascii", "replace").splitlines()
    head = lines[0].split() if lines else []
    if head[:3] != [ota.MANIFEST_MAGIC, ota.MANIFEST_VERSION, version]:
        raise ReleaseError(f"{folder / MANIFEST}: bad header {lines[:1]}")
    files = []
    for n, line in enumerate(lines[1:], 2):
        words = line.split(" ")
        if len(words) != 3 or not words[0].isdigit() or not ota.PATH.fullmatch(words[2]) \
                or ".." in words[2]:
            raise ReleaseError(f"{folder / MANIFEST} line {n}: not SIZE SHA256 PATH: {line!r}")
        size, sha_hex, path = words
        try:
            data = (folder / FILES / path).read_bytes()
        except OSError as exc:
            raise ReleaseError(f"{path}: {exc.strerror}") from None
        if len(data) != int(size) or hashlib.sha256(data).hexdigest() != sha_hex:
            raise ReleaseError(f"{folder / FILES / path}: not the file the manifest lists")
        files.append((path, data))
    return Release(folder, version, manifest, tuple(files), sig, key)
