# Sealed telemetry (CONTRACT.md v2) on any port: the same samples give the same payloads,
# byte for byte, wherever they are sealed (tests/firmware/test_firmware_wasm.py holds the
# 64-bit unix port's output against the 32-bit WebAssembly port's, where a millisecond
# timestamp is a big int), and the gateway's code checks them.
from mpytest import in_tmpdir, payload
from urbanpulse_fw import seal, telemetry

KEY = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"
T0 = 1790000000123  # ms: above 2^30, a big int where small ints are 31-bit


@in_tmpdir  # the seal keeps its chain in the file "chain"
def test_sealed_payloads():
    ob = telemetry.Outbox(7, 3, 4096)
    ob.seal = seal.Seal("air-wasm-01", KEY)
    for i in range(7):
        ob.add(telemetry.encode(b'{"t":%d' % (T0 + 1000 * i), (
            ("pm25", 12.5 + i), ("pm10", 20), ("temperature", -3.25), ("humidity", 48.0))))
    while True:
        msg = ob.take()
        if msg is None:
            break
        print("PAYLOAD", payload(msg).decode())
        ob.ack(msg)
