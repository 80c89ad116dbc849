"""A file the gateway reloads when it changes (the registry, the key store)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Generic, TypeVar

T = TypeVar("T")


class FileWatcher(Generic[T]):
    """``value`` is ``load(path)``, loaded again by ``poll()`` when the file's modification
    time or size changed. A load that raises keeps the previous value (the caller logs it)."""

    def __init__(self, path: Path, load: Callable[[Path], T]) -> None:
        self.path = path
        self._load = load
        self.value = load(path)
        self._stamp = self._file_stamp()

    def _file_stamp(self) -> tuple[int, int] | None:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return None
        return (st.st_mtime_ns, st.st_size)

    def poll(self) -> bool:
        """Reload if changed; True if a new value is in force."""
        stamp = self._file_stamp()
        if stamp == self._stamp:
            return False
        self._stamp = stamp
        self.value = self._load(self.path)
        return True
