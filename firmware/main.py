# Runs after boot.py. On the host the fleet runs this file with the board's folder as cwd.
# app.py makes the main loop and is then forgotten (its code would hold heap for good); the
# loop runs until the board resets.
try:
    from urbanpulse_fw import hw
except Exception as e:  # the firmware does not load (a broken update): reset, boot.py goes back
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
