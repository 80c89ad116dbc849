# Capacitive soil moisture probe (v1.2 type: the output voltage falls as the soil gets wetter)
# on an ADC pin, calibrated with two raw readings: in dry air and in water.
from urbanpulse_fw.drivers import base


class Sensor(base.Sensor):
    def __init__(self, adc, dry, wet):
        self.adc = adc
        self.dry = dry
        self.wet = wet

    def sample(self, t):
        s = 0
        for _ in range(8):  # the ESP32's ADC is noisy
            s += self.adc.read_u16()
        raw = s // 8
        if raw < 600 or raw > 64900:
            return "range"  # at a rail: probe unplugged or shorted
        pct = (self.dry - raw) * 100 / (self.dry - self.wet)
        return [("soil_moisture", round(0.0 if pct < 0 else 100.0 if pct > 100 else pct, 1))]
