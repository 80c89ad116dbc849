# Remote commands on {prefix}/{id}/cmd (QoS 1), each answered on {prefix}/{id}/cmd/ack:
#   {"id":"c-17","op":"reboot"}                      -> {"id":"c-17","ok":true}
#   {"id":"c-18","op":"set_interval","sensor":"air","interval_s":60}   name or kind
#   {"id":"c-19","op":"identify","seconds":10}       blink the status LED
#   {"id":"c-20","op":"flush"}                       publish the whole buffer now
#   {"id":"c-21","op":"config","config":{...}}       see below
# Anything wrong -> {"id":..,"ok":false,"error":"..."} naming the key and the value.
#
# "config" saves the partial config as config.new and reboots at once; at start cfgtrial.py
# merges it into config.json, validates it (or refuses it with the reason), keeps the old
# file as config.bak and puts the new one on trial; the answer goes out once the board is
# connected again (validating in the running firmware would not fit a 64 KiB heap). If the
# board does not reach the broker within rollback_s with the new config (or fails to start
# with it 3 times), config.bak comes back.
#
# Functions of the main loop (`self`), kept apart to keep modules small.
import json
import os
import time

from urbanpulse_fw import clock


def _num(d, key, lo, hi, default=None):
    v = d.get(key, default)
    if type(v) not in (int, float) or not lo <= v <= hi:
        raise ValueError("%s must be a number %r..%r, got %r" % (key, lo, hi, v))
    return v


def handle(self, payload):
    cid = None
    extra = None  # type: dict | None
    try:
        d = json.loads(payload)
        if type(d) is not dict:
            raise ValueError("must be a JSON object")
        cid = d.get("id")
        extra = command(self, d, d.get("op"))
        if extra is None:
            return  # answered after the reboot
        self.log("command %s: ok" % cid)
        extra["ok"] = True
    except (ValueError, TypeError, OSError, MemoryError) as e:
        self.log("command %s refused: %s" % (cid, e))
        extra = {"ok": False, "error": str(e) or type(e).__name__}
    extra["id"] = cid
    ack(self, json.dumps(extra))


def ack(self, text):
    up = self.up
    up.client.publish(up.topic + "cmd/ack", text.encode(), 1)


def command(self, d, op):
    now = clock.ticks()
    if op == "reboot":
        # Once the ack is acknowledged (or after 5 s): the operator hears the answer.
        self.reboot_at = time.ticks_add(now, 5000 * clock.SCALE)
    elif op == "set_interval":
        name = d.get("sensor")
        n = _num(d, "interval_s", 0.01, 86400)
        hit = []
        for i, s in enumerate(self.sensors):
            if name in (s.name, getattr(s, "kind", None)):
                s.interval_ms = int(n * 1000)
                self.due[i] = now
                hit.append(s.name)
        if not hit:
            raise ValueError("sensor: no sensor named %r" % (name,))
        return {"sensors": hit}
    elif op == "identify":
        n = _num(d, "seconds", 1, 600, 10)
        self.log("identify: blinking the status LED for %s s" % n)
        self.blink = [time.ticks_add(now, int(n * 1000) * clock.SCALE), 0]
    elif op == "flush":
        self.flushing = True
        return {"buffered": self.outbox.held()}
    elif op == "config":
        new = d.get("config")
        if type(new) is not dict or not new:
            raise ValueError("config must be a non-empty object")
        with open("config.new", "w") as f:
            f.write(json.dumps({"id": d.get("id"), "config": new}))
        self.reboot_at = now
        return None
    else:
        raise ValueError("unknown op %r" % (op,))
    return {}


def connected(self):
    """After a connect: answer a command applied at start, confirm a config on trial."""
    try:
        with open("cmd_ack") as f:
            ack(self, f.read())
        os.remove("cmd_ack")
    except OSError:
        pass
    if self.trial is not None:
        try:
            os.remove("config.trial")
        except OSError:
            pass
        self.trial = None
        self.log("new config confirmed: connected to the broker")


def rollback(self):
    self.log("new config did not reach the broker in time: back to config.bak")
    with open("config.trial", "w") as f:
        f.write("99")  # the next start rolls back (cfgtrial.starts)
    self.reboot_at = clock.ticks()
