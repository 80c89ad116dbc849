# Remote config updates, applied at start (where config.py is loaded anyway: validating in
# the running firmware would not fit a 64 KiB heap beside everything else).
#   config.new    a "config" command ({"id": .., "config": {partial}, ...}), saved by mainloop.py
#   config.json   the config in use (written atomically: temporary file, then rename)
#   config.bak    the previous one, known to have worked
#   config.trial  present while on trial: the number of starts with the new config so far
#   cmd_ack       the command's answer, published once connected
# Rollback (config.bak back to config.json) when the board has not connected within
# rollback_s of starting, or when it has started 3 times with it without connecting (e.g. it
# crashes). Loaded at start only.
import json

from urbanpulse_fw.spool import replace

MAX_STARTS = 3
# Changed by a "config" command only with "unsafe": true: the board's link and its safety
# nets (a wrong value can cut it off for good), and its time source, which TLS and the
# commands' expiry rest on. The gateway's contract/signing.py UNSAFE_CONFIG_KEYS is the same
# (tests/firmware/test_kinds.py).
UNSAFE = ("mqtt", "wifi", "watchdog_s", "rollback_s", "ntp_host")
# Never changed by a command: the release key decides what firmware a board runs, apart from
# the command key, whose holders decide only when and where (ota.py).
FIXED = ("ota_key",)


def _merge(old, new):
    # Objects (wifi, mqtt, battery, deep_sleep, host_clock) are merged key by key, so a
    # partial update such as {"mqtt": {"port": 1884}} keeps the rest; other keys replace.
    for k in new:
        v = new[k]
        if type(v) is dict and type(old.get(k)) is dict:
            _merge(old[k], v)
        else:
            old[k] = v
    return old


def update(partial, path="config.json"):
    """Merge, validate (config.ConfigError naming the key), keep the old file as config.bak,
    write the new one and mark it on trial."""
    from urbanpulse_fw import config

    with open(path) as f:
        old_text = f.read()
    raw = _merge(json.loads(old_text), partial)
    config.validate(raw)
    replace("config.bak", old_text)
    replace("config.trial", "0")
    replace(path, json.dumps(raw))


def apply_new(path="config.json"):
    """Apply a pending config command (config.new), leaving its answer in cmd_ack."""
    import os

    try:
        with open("config.new") as f:
            d = json.loads(f.read())
    except (OSError, ValueError):
        return
    a = {"id": d.get("id"), "ok": True}
    try:
        new = d["config"]
        for k in FIXED:
            if k in new:
                raise ValueError("config.%s is set over USB only (urbanpulse provision)" % k)
        for k in UNSAFE:
            if k in new and d.get("unsafe") is not True:
                raise ValueError('config.%s needs "unsafe":true' % k)
        update(new, path)
        print("urbanpulse: new config applied, on trial")
    except (ValueError, OSError) as e:  # config.ConfigError is a ValueError
        a["ok"] = False
        a["error"] = str(e)
        print("urbanpulse: new config refused: %s" % e)
    replace("cmd_ack", json.dumps(a))
    os.remove("config.new")


def starts():
    """Count one more start on trial; None when not on trial."""
    try:
        with open("config.trial") as f:
            n = int(f.read() or "0") + 1
    except (OSError, ValueError):
        return None
    replace("config.trial", "%d" % n)
    return n


def confirm():
    import os

    try:
        os.remove("config.trial")
    except OSError:
        pass


def rollback(path="config.json"):
    with open("config.bak") as f:
        text = f.read()
    replace(path, text)
    confirm()
