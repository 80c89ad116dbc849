"""What the gateway knows of the boards from files an operator keeps: the registry (which
boards exist, their tags) and the key store (their device keys), each re-read when it changes;
a broken edit is logged and the last good version stays in force."""

from __future__ import annotations

import logging
from pathlib import Path

from urbanpulse.registry.devices import Registry, RegistryError, RegistryWatcher
from urbanpulse.registry.keystore import KeyStoreError, KeyStoreWatcher

log = logging.getLogger("urbanpulse.gateway")


class Directory:
    def __init__(self, registry: Path, device_keys: Path | None) -> None:
        self.registry_watcher = RegistryWatcher(registry)
        self.key_watcher = KeyStoreWatcher(device_keys) if device_keys is not None else None

    @property
    def registry(self) -> Registry:
        return self.registry_watcher.registry

    def keys(self) -> dict[str, bytes]:
        return {} if self.key_watcher is None else self.key_watcher.keys

    def tag_string(self, device_id: str) -> str | None:
        device = self.registry.get(device_id)
        return None if device is None else device.tag_string

    def device_ids(self) -> set[str]:
        return {d.device_id for d in self.registry.devices}

    def poll(self) -> bool:
        """Re-read what changed; True if the registry did."""
        try:
            changed = self.registry_watcher.poll()
        except RegistryError as exc:
            log.error("registry not reloaded, keeping the previous one: %s", exc)
            changed = False
        if changed:
            log.info("registry reloaded: %d devices", len(self.registry))
        if self.key_watcher is not None:
            try:
                if self.key_watcher.poll():
                    log.info("device keys reloaded: %d boards", len(self.key_watcher.keys))
            except KeyStoreError as exc:
                log.error("device keys not reloaded, keeping the previous ones: %s", exc)
        return changed
