# What the emulated register-map chips share (BME280, QMC5883L): a register pointer that
# auto-increments, and hooks for writes (store) and reads (load).


class Regs:
    fault = None

    def __init__(self):
        self.r = bytearray(256)
        self.ptr = 0

    def store(self, reg, value):
        self.r[reg] = value

    def load(self, reg):
        pass

    def write(self, b):
        self.ptr = b[0]
        for x in b[1:]:
            self.store(self.ptr, x)
            self.ptr = (self.ptr + 1) & 255

    def read(self, n):
        self.load(self.ptr)
        out = bytes(self.r[self.ptr:self.ptr + n])
        self.ptr = (self.ptr + n) & 255
        return out
