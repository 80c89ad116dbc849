# What runs once at start, then is unloaded (RAM): config (with remote updates and rollback,
# cfgtrial.py), boot counter, reset cause, watchdog, the TLS context (tlsconf.py), sensors.
import gc
import os

from urbanpulse_fw.hw import unload as _unload


def _trial(path, errors):
    from urbanpulse_fw import cfgtrial

    cfgtrial.apply_new(path)
    trial = cfgtrial.starts()
    if trial is not None and trial > cfgtrial.MAX_STARTS:
        print("urbanpulse: new config failed %d starts: back to config.bak" % (trial - 1))
        cfgtrial.rollback(path)
        errors.append("config rolled back after %d failed starts" % (trial - 1))
        trial = None
    _unload("cfgtrial")
    _unload("spool")  # cfgtrial's atomic writes (the main loop loads it again if it needs it)
    return trial


def start(path="config.json"):
    """(validated config dict, boot number, config problems, on trial); a bad config raises
    its ConfigError (unless config.bak, the last good one, can stand in): main.py then resets
    the board after a while (hw.start_failed)."""
    errors = []  # type: list
    trial = None
    names = os.listdir()
    if "config.new" in names or "config.trial" in names:
        trial = _trial(path, errors)
    fw_trial = False
    if "ota" in names:
        from urbanpulse_fw import ota

        fw_trial = ota.at_start()
        _unload("ota")
        _unload("spool")
    from urbanpulse_fw import bootcount, config

    try:
        cfg = config.load(path)
    except config.ConfigError as e:
        try:
            cfg = config.load("config.bak")
        except config.ConfigError:
            raise e from None
        print("urbanpulse: %s" % e)
        print("urbanpulse: running with config.bak")
        errors.append(str(e))
    cfg["fw_trial"] = fw_trial
    boot = bootcount.bump()
    _unload("config")
    _unload("bootcount")
    gc.collect()
    return cfg, boot, errors, trial is not None


# Safe mode: after SAFE_AFTER resets in a row that nobody meant (each before the board had
# served STABLE_S connected), the board starts without its sensors (the likeliest cause of a
# crash loop: a driver, a bus, a config), connects, reports and takes commands; a "reboot"
# command, or STABLE_S of service, clears the count.
SAFE_AFTER = 5
STABLE_S = 600
CRASHES = "crashes"  # the count, in flash
UNPLANNED = ("crash", "wdt", "fatal", "memory", "start")


def crashes(cause):
    """Unplanned resets in a row, this start included; a power-on starts the count again."""
    from urbanpulse_fw import bootcount

    if cause == "power":
        n = 0
        bootcount.write(CRASHES, 0)
    elif cause in UNPLANNED:
        n = bootcount.bump(CRASHES)
    else:  # a deep-sleep wake, a reboot command, a config applied: meant
        n = bootcount.read(CRASHES)
    _unload("bootcount")
    return n


def hardware(cfg):
    from urbanpulse_fw import hwmisc

    cause = hwmisc.reset_cause()
    cfg["uid"] = hwmisc.unique_id()
    # The watchdog runs from here on; the main loop feeds it after every pass.
    wdt = hwmisc.watchdog(cfg["watchdog_s"] * 1000) if cfg["watchdog_s"] else None
    _unload("hwmisc")
    t = cfg["mqtt_tls"]
    if t:
        from urbanpulse_fw import tlsconf

        cfg["mqtt_tls"] = (tlsconf.context(t[0]), t[1])
        _unload("tlsconf")
    return cause, wdt


def build_sensors(cfg, errors):
    gc.collect()
    try:
        from urbanpulse_fw import sensors
    except ImportError:  # a build without real drivers: simulated sensors only
        from urbanpulse_fw import simsensors as sensors  # type: ignore[no-redef]
    objs, bad = sensors.build(cfg.pop("sensors"), cfg["kind"], cfg["sample_interval_s"],
                              cfg["seed"], int(cfg["utc_offset_h"] * 3600))
    errors += bad
    # Needed once: the sensor objects and their drivers stay (and the entries are dropped
    # from the config above). The packages' __init__ modules are not needed either.
    for m in ("sensors", "simsensors", "sim", "drivers"):
        _unload(m)
    return objs
