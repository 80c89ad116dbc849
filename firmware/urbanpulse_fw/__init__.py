# UrbanPulse board firmware (MicroPython), copied to the board as it is.
FW_VERSION = "0.1.0"

# Scratch memory for a moment, allocated once at start (a long-running board's fragmented
# heap may not find a few hundred bytes in one piece later): encoding a sample (telemetry.py)
# and receiving from the broker (mqtt.py). Never both at once: each use ends before it returns.
SCRATCH = bytearray(320)
