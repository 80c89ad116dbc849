# UrbanPulse board firmware (MicroPython), copied to the board as it is.
FW_VERSION = "0.1.0"
