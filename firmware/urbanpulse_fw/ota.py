# Over-the-air updates, the board's side (README, "Over-the-air updates").
#
# An "ota" command, signed with the command key (cmdauth.py), names a release: its version,
# the SHA-256 and size of its manifest, and the release key's signature over
# "urbanpulse-ota-v1|{version}|{sha256}|{size}". Two keys: the operators choose which boards
# and when, the release key what runs on them. The board then fetches the manifest (file 0)
# and each file it lists, one chunk at a time: it asks on {prefix}/{id}/ota/req with
# {"id":..,"f":file,"o":offset} and is answered on {prefix}/{id}/ota with b"file offset\n" and
# the bytes. Only the asker's next chunk is taken, so a lost or repeated answer costs a
# request again, never a wrong byte. Each file goes into the slot that is not running
# (ota/a or ota/b) and is checked against its size and SHA-256 as read back from flash. Then
# the board reboots into the slot on trial (boot.py); the new firmware confirms itself once
# its first health report reached the broker (confirm), and any start before that goes back.
#
# In ota/: active (the confirmed slot), job ("id version sha256 size" of the release being
# fetched or tried: the same release is resumed where it stopped), manifest, trial and
# failed (boot.py), ack (an answer to publish at the next connect).
import gc
import hashlib
import json
import os
import sys
import time
from binascii import hexlify, unhexlify

from urbanpulse_fw import FW_VERSION, clock, hw
from urbanpulse_fw.spool import replace

if False:  # for type checkers only: no typing module on the board
    from typing import Any  # noqa: F401  (used in type comments)

DIR = "ota/"
ASK_MS = 5000  # a request unanswered this long is made again
STALL_MS = 600000  # the download is given up after this long without a new byte
_NAME = "abcdefghijklmnopqrstuvwxyz0123456789_./"


def _words(path):
    try:
        with open(path) as f:
            return f.read().split()
    except OSError:
        return []


def _size(path):
    try:
        return os.stat(path)[6]
    except OSError:
        return 0


def _rm(path):
    """Remove a file, or a folder and everything in it; nothing if it is not there."""
    try:
        for e in list(os.ilistdir(path)):  # not while the folder changes under the iterator
            _rm(path + "/" + e[0])
        os.rmdir(path)
    except OSError:
        try:
            os.remove(path)
        except OSError:
            pass


def _ack(up, d):
    up.client.publish(up.topic + "cmd/ack", json.dumps(d).encode(), 1)


def at_start():
    """At every start with an ota/ folder: True if this start runs an update on trial. After
    a trial that failed (boot.py went back), or a start that is not the update's though it
    should be (boot.py could not switch), the answer saying so is left for the connect."""
    names = os.listdir(DIR[:-1])
    job = _words(DIR + "job") + ["?", "?"]
    if "trial" in names and job[1] != FW_VERSION:
        os.rename(DIR + "trial", DIR + "failed")  # not the update running: not on trial
        names.append("failed")
    if "failed" not in names:
        return "trial" in names
    slot = _words(DIR + "failed")[:1]
    a = {"id": job[0], "ok": True, "state": "running", "fw": FW_VERSION}
    if not slot or slot != _words(DIR + "active") or job[1] != FW_VERSION:
        a = {"id": job[0], "ok": False, "error": "rolled_back", "fw": FW_VERSION,
             "tried": job[1]}
        if slot and slot != _words(DIR + "active"):
            _rm(DIR + slot[0])
        _rm(DIR + "manifest")
    # The answer first, the marker last: a power cut in between repeats this, not loses it.
    replace(DIR + "ack", json.dumps(a))
    _rm(DIR + "job")
    _rm(DIR + "trial")
    _rm(DIR + "failed")
    return False


def confirm(up):
    """The update on trial reached the broker and delivered its health: keep it."""
    job = _words(DIR + "job") or ["?"]
    t = _words(DIR + "trial")
    if t:
        replace(DIR + "active", t[0])
    _rm(DIR + "trial")
    _rm(DIR + "job")
    _rm(DIR + "manifest")
    _ack(up, {"id": job[0], "ok": True, "state": "running", "fw": FW_VERSION})


def command(loop, d, extra):
    """The "ota" command d (its signature checked), for mainloop.MainLoop loop; its answer's
    members go into extra. Raises ValueError with the reason to refuse it."""
    if d.get("version") == FW_VERSION:
        # Runs it already, confirmed, or on trial: then its confirmation (or rollback)
        # answers this command too.
        extra["state"] = "installed" if loop.fw_trial else "running"
        extra["fw"] = FW_VERSION
        if loop.fw_trial:
            adopt(d.get("id"))
        return
    if loop.ota is not None:
        loop.ota.adopt(d)  # the same release offered again (a new push) takes it over
        extra["state"] = "fetching"
        return
    # The release signature's check, then the download, take the room kept for checking
    # commands; it comes back if the update stops (Job.end).
    n = len(loop.spare)
    loop.spare = []
    gc.collect()
    try:
        check(loop.cfg, d)
        loop.ota = Job(loop, d, n)
    finally:
        if loop.ota is None:
            gc.collect()
            for _ in range(n):
                loop.spare.append(bytearray(1024))
    extra["state"] = "fetching"  # the first request at the next pass


def adopt(cid):
    """The update being fetched, or on trial, answers the command cid from now on (when it
    confirms or rolls back, after a restart too)."""
    job = _words(DIR + "job")
    if len(job) == 4:
        job[0] = cid if type(cid) is str and cid and " " not in cid else "?"
        replace(DIR + "job", " ".join(job))


def check(cfg, d):
    """Raise ValueError with the reason unless the command d can start an update: a release
    signed with the board's release key, a board that can take it."""
    if cfg["wake_s"]:
        raise ValueError("deep_sleep: update a battery board over USB")
    if not cfg["ota_key"] or not cfg["cmd_key"]:
        raise ValueError("no_ota_key: this board takes no updates over the air")
    v = d.get("version")
    h = d.get("manifest")
    n = d.get("size")
    s = d.get("release_sig")
    if (type(v) is not str or type(h) is not str or len(h) != 64 or type(n) is not int
            or type(s) is not str or len(s) != 128 or not 0 < n < 65536):
        raise ValueError("version, manifest (64 hex), size (1..65535), release_sig "
                         "(128 hex) needed")
    if _words(DIR + "trial"):
        raise ValueError("on_trial: an update is being tried")
    from urbanpulse_fw import edkey

    try:
        ok = edkey.verify(unhexlify(cfg["ota_key"]), unhexlify(s),
                          ("urbanpulse-ota-v1|%s|%s|%d" % (v, h, n)).encode())
    finally:
        for m in ("edkey", "sha512", "ed25519"):
            hw.unload(m)
        gc.collect()
    if not ok:
        raise ValueError("bad_release_signature")


class Job:
    """One release being fetched: the manifest (file 0), then each file it lists."""

    def __init__(self, loop, d, spare):
        self.loop = loop
        self.spare = spare  # KiB of room for checking commands to give back (end)
        self.cid = d["id"]
        self.version = d["version"]
        try:
            os.mkdir(DIR[:-1])
        except OSError:
            pass
        self.manifest = d["manifest"]
        self.slot = DIR + ("b" if _words(DIR + "active") == ["a"] else "a") + "/"
        job = [self.cid, self.version, d["manifest"], "%d" % d["size"]]
        if _words(DIR + "job")[1:] != job[1:]:  # another release: start afresh
            _rm(self.slot[:-1])
            _rm(DIR + "manifest")
        replace(DIR + "job", " ".join(job))
        self.f = 0  # the file being fetched: 0 the manifest, then the manifest's lines
        self.path = DIR + "manifest"
        self.sha = d["manifest"]
        self.size = d["size"]
        self.off = _size(self.path)
        if self.off > self.size:  # not this release's manifest: fetched again
            _rm(self.path)
            self.off = 0
        self.buf = bytearray(512)  # type: Any  # reading back for the hash
        self.asked = None  # type: Any  # ticks of the last request
        self.last = time.ticks_ms()  # ticks of the last progress
        self.bytes = 0  # received this boot
        up = loop.up
        up.client.subscribe(up.topic + "ota", 0)

    def adopt(self, d):
        """A new "ota" command during the download: the same release goes on under the new
        command's id (its push serves it now); another is refused."""
        if d.get("manifest") != self.manifest:
            raise ValueError("busy: fetching %s" % self.version)
        self.cid = d.get("id")
        adopt(self.cid)
        self.asked = None

    def step(self):
        """Each pass of the main loop while connected: ask again what went unanswered."""
        now = time.ticks_ms()
        if time.ticks_diff(now, self.last) >= STALL_MS:
            self.end({"ok": False, "error": "stalled: no data for %d s" % (STALL_MS // 1000)})
        elif self.asked is None or time.ticks_diff(now, self.asked) >= ASK_MS:
            self.next()

    def chunk(self, payload):
        """An answer on .../ota: the next bytes of the file being fetched, else ignored."""
        i = payload.find(b"\n")
        w = payload[:i].split() if i > 0 else []
        if len(w) != 2 or w[0] != b"%d" % self.f or w[1] != b"%d" % self.off:
            return  # a late or repeated answer
        n = len(payload) - i - 1
        if self.off + n > self.size:
            self.end({"ok": False, "error": "bad_size: %s" % self.path})
            return
        try:
            with open(self.path, "ab") as f:
                f.write(memoryview(payload)[i + 1:])
        except OSError as e:  # not the connection's: the flash (full?)
            self.end({"ok": False, "error": "flash: %s" % e})
            return
        self.off += n
        self.bytes += n
        self.last = time.ticks_ms()
        self.next()

    def next(self):
        """Ask for the next chunk; a whole file is checked first, and once the last one is
        in, the update is installed."""
        try:
            why = self.advance()
        except OSError as e:  # not the connection's: the flash (full?)
            why = "flash: %s" % e
        if why == "installed":
            return
        if why:
            self.end({"ok": False, "error": why})
            return
        up = self.loop.up
        up.client.publish(up.topic + "ota/req", ('{"id":%s,"f":%d,"o":%d}' % (
            json.dumps(self.cid), self.f, self.off)).encode(), 0)
        self.asked = time.ticks_ms()

    def advance(self):
        """Past every whole file (checked) to the first one that is not: None, or why the
        update stops ("installed" when it is complete)."""
        while self.off >= self.size:
            if self.size == 0:
                open(self.path, "wb").close()
            if self.hash() != self.sha:
                os.remove(self.path)
                return "bad_hash: %s" % self.path
            if self.f == 0:
                w = self.line(0) or []
                m = sys.implementation._mpy
                v = w[3].split(".") if len(w) == 4 else []
                if w[:3] != ["urbanpulse-ota", "1", self.version] or len(v) != 2:
                    return "bad_manifest"
                try:
                    if int(v[0]) != m & 0xFF or int(v[1]) > m >> 8 & 3:
                        return "mpy_version: the release needs .mpy %s, this MicroPython " \
                               "runs %d.%d" % (w[3], m & 0xFF, m >> 8 & 3)
                except ValueError:
                    return "bad_manifest"
            self.f += 1
            w = self.line(self.f)
            if w is None:
                self.install()
                return "installed"
            if len(w) != 3 or not w[2].startswith("urbanpulse_fw/") or ".." in w[2] \
                    or w[2].strip(_NAME) or len(w[1]) != 64 or not w[0].isdigit():
                return "bad_manifest: line %d" % self.f
            self.path = self.slot + w[2]
            self.sha = w[1]
            self.size = int(w[0])
            d = ""
            for part in self.path.split("/")[:-1]:
                d += part
                try:
                    os.mkdir(d)
                except OSError:
                    pass
                d += "/"
            self.off = _size(self.path)
            if self.off > self.size:
                os.remove(self.path)
                self.off = 0
        return None

    def line(self, n):
        """The manifest's line n (0: its header) as words; None past its end."""
        with open(DIR + "manifest") as f:
            for _ in range(n):
                f.readline()
            t = f.readline()
        return t.split() if t else None

    def hash(self):
        h = hashlib.sha256()
        mv = memoryview(self.buf)
        with open(self.path, "rb") as f:
            while True:
                n = f.readinto(self.buf)
                if not n:
                    break
                h.update(mv[:n])
        return hexlify(h.digest()).decode()

    def install(self):
        """Every file is in and checked: reboot into the new firmware, on trial, with the
        count of crashes cleared (startup.crashes): an update is what a board in safe mode
        waits for, and the new firmware starts with its sensors."""
        replace(DIR + "trial", self.slot[-2] + " 0")
        _rm("crashes")
        self.loop.log("update %s fetched and checked: rebooting into it" % self.version)
        self.end({"ok": True, "state": "installed", "fw": self.version})
        # Once the answer is acknowledged (or after 5 s), as a reboot command.
        self.loop.reboot_at = clock.add(clock.ticks(), 5000 * clock.SCALE)
        self.loop.reboot_why = "ota"

    def end(self, a):
        a["id"] = self.cid
        loop = self.loop
        if not a["ok"]:
            loop.log("update %s stopped: %s" % (self.version, a["error"]))
        _ack(loop.up, a)
        loop.ota = None
        self.buf = None
        gc.collect()
        try:
            for _ in range(self.spare):
                loop.spare.append(bytearray(1024))
        except MemoryError:
            pass  # less room for the next command's check, which says so if it fails
