# Runs after boot.py. On the host the fleet runs this file with the board's folder as cwd.
# app.py makes the main loop and is then forgotten (its code would hold heap for good); the
# loop runs until the board resets.
from urbanpulse_fw import hw

try:
    from urbanpulse_fw import app

    loop = app.main()
except Exception as e:  # whatever stops the start: reset after a while
    hw.start_failed(e)
del app
hw.unload("app")
loop.go()
