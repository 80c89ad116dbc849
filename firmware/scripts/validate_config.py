# Run by `urbanpulse provision` under the MicroPython unix port (MICROPYPATH: the firmware's
# host stand-ins, then the firmware): says what a board would say of a config.json at start.
# Usage: micropython validate_config.py CONFIG.json; prints VALID, or INVALID and exits 3.
import sys

from urbanpulse_fw import config

try:
    c = config.load(sys.argv[1])
except config.ConfigError as e:
    print("INVALID", e)
    sys.exit(3)
# The board checks each sensor entry when it builds its sensors (a bad one is skipped and
# reported): build them here too, on the host's bus stand-ins, so none would be skipped.
from urbanpulse_fw import sensors

made, errors = sensors.build(c["sensors"], c["kind"], c["sample_interval_s"])
if errors:
    print("INVALID", "; ".join(errors))
    sys.exit(3)
print("VALID")
