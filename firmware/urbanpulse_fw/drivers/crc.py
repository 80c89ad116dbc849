# Checksums of the chips' protocols.


def crc8_sensirion(data):
    """Sensirion CRC-8: polynomial 0x31, init 0xFF, no reflection; CRC(BE EF) = 0x92."""
    c = 0xFF
    for b in data:
        c ^= b
        for _ in range(8):
            c = ((c << 1) ^ 0x31) & 0xFF if c & 0x80 else (c << 1) & 0xFF
    return c


def crc16_modbus(data):
    """CRC-16/MODBUS: reflected polynomial 0xA001, init 0xFFFF; sent low byte first."""
    c = 0xFFFF
    for b in data:
        c ^= b
        for _ in range(8):
            c = (c >> 1) ^ 0xA001 if c & 1 else c >> 1
    return c
