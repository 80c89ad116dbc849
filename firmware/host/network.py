# Host stand-in for MicroPython's `network` module, for the firmware on the unix port (fleet
# simulator, tests); never copied to a board. Only what urbanpulse_fw/hw.py uses: the host
# is always online, so connect() succeeds at once. Kept tiny: the board's heap is 64 KiB.
import os

STA_IF = 0


class WLAN:
    def __init__(self, *args):
        self.ssid = None

    def active(self, *args):
        return True

    def connect(self, ssid, *args):
        self.ssid = ssid

    def isconnected(self):
        return self.ssid is not None

    def status(self, *args):
        # Stable per board folder, so each simulated board has its own RSSI and MAC.
        h = 5381
        for c in os.getcwd():
            h = (h * 33 + ord(c)) & 0xFFFFFFFF
        if args == ("rssi",):
            return -60 - h % 25
        return h

    def config(self, *args):
        h = self.status()
        return bytes([2, 0x55, h >> 24, (h >> 16) & 255, (h >> 8) & 255, h & 255])  # "mac"
