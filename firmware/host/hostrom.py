# Host stand-in for a board's ROMFS partition (never copied to a board). A board keeps the
# firmware's code in a ROMFS image that MicroPython maps from flash and runs in place: the
# bytecode and the text of its names take no heap. Here the image is read into one buffer,
# the first allocation in a heap made that much bigger than the board's RAM
# (urbanpulse.devtools.hostboard.heap_size), and mounted at /rom as the ESP32 port mounts it.
import sys

import vfs

with open(".fw/board.rom", "rb") as f:
    _image = bytearray(f.seek(0, 2))
    f.seek(0)
    f.readinto(_image)
vfs.mount(vfs.VfsRom(_image), "/rom")
del _image, f
# As on an ESP32 with ROMFS: the board's own files (cwd), the port's frozen modules (`ssl`),
# then the image; the host's stand-ins for the port's C modules before all.
sys.path[:] = ["/rom/host", "", ".frozen", "/rom"]
# Then what a board's MicroPython runs before main.py: boot.py, which picks the firmware.
__import__("boot")
del sys.modules["boot"]
