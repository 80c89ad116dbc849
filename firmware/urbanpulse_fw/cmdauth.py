# Signed commands (CONTRACT.md v2, "Signed commands"): a board with a command key ("cmd_key"
# in config.json) carries out a command only if the city's command key signed it for this
# board, with a counter higher than any it accepted before (kept in flash, so a reboot does
# not reopen old commands) and an expiry still ahead by the board's clock (a board
# whose clock is not set relies on the counter alone, so that a command can still fix it).
#
# Loaded with the verifier for one command and unloaded after (mainloop.py): 64 KiB boards
# have no room to keep their code. The cheap checks come first: a flood of stale or
# misaddressed commands costs no signature check.
import gc
from binascii import unhexlify

from urbanpulse_fw import clock, hw

COUNTER = "cmd_n"
_SIG = b',"sig":"'


def _drop(name):
    hw.unload(name)
    gc.collect()


def check(cfg, key, d, payload):
    try:
        _check(cfg, key, d, payload)
    finally:
        for m in ("bootcount", "sha512", "ed25519"):
            _drop(m)


def _check(cfg, key, d, payload):
    """Raise ValueError with the contract's reason unless the command d (parsed from the
    bytes payload) is signed with key (the public key and its edkey.table), addressed to
    this board, new and not expired; then keep its counter. Each helper module is loaded
    for its step and dropped before the next."""
    if "sig" not in d:
        raise ValueError("unsigned")
    # The signature must be the last member, and the signed bytes are the payload without
    # it: P + "}" where payload = P + ',"sig":"' + 128 hex + '"}'.
    i = len(payload) - 138
    if i < 1 or payload[i:i + 8] != _SIG or payload[-2:] != b'"}':
        raise ValueError("bad_signature")
    if d.get("device") != cfg["device_id"]:
        raise ValueError("wrong_device")
    n = d.get("n")
    exp = d.get("exp")
    if type(n) is not int or type(exp) is not int:
        raise ValueError("n and exp must be integers")
    from urbanpulse_fw import bootcount

    last = bootcount.read(COUNTER)
    del bootcount
    _drop("bootcount")
    if n <= last:
        raise ValueError("replayed")
    now = clock.now_ms()
    if clock.is_valid(now) and exp * 1000 <= now:
        raise ValueError("expired")
    try:
        sig = unhexlify(payload[i + 8:-2])
    except ValueError:
        sig = b""
    if key[1] is None or len(sig) != 64:
        raise ValueError("bad_signature")
    from urbanpulse_fw import sha512

    digest = sha512.digest([sig[:32], key[0], memoryview(payload)[:i], b"}"])
    del sha512
    _drop("sha512")
    from urbanpulse_fw import ed25519

    ok = ed25519.verify_with(key[1], digest, sig)
    del ed25519
    _drop("ed25519")
    if not ok:
        raise ValueError("bad_signature")
    from urbanpulse_fw import bootcount

    bootcount.write(COUNTER, n)  # before the command runs: a reboot must not make it new
