# Runs after boot.py. On the host the fleet runs this file with the board's folder as cwd.
# app.py makes the main loop and is then forgotten (its code would hold heap for good); the
# loop runs until the board resets. A board held for copying (scripts/hold.py, `urbanpulse
# flash`) stays at the REPL for this one start: no firmware, no watchdog. (Not by raising
# SystemExit: after main.py an ESP32 takes that for a soft reset, and would start again.)
import os

if "hold" in os.listdir():
    os.remove("hold")
    print("UrbanPulse: held at the REPL for a copy over USB (this start only)")
else:
    try:
        from urbanpulse_fw import hw
    except Exception as e:  # the firmware does not load (a bad update): boot.py goes back
        import sys
        import time

        import machine

        sys.print_exception(e)
        time.sleep(5)
        getattr(machine, "reset", lambda: sys.exit(3))()  # the unix port: exit 3 is its reset

    try:
        from urbanpulse_fw import app

        loop = app.main()
    except Exception as e:  # whatever stops the start: reset after a while
        hw.start_failed(e)
    del app
    hw.unload("app")
    loop.go()
