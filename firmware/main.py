# Runs after boot.py. On the host the fleet runs this file with the board's folder as cwd.
# app.py makes the main loop and is then forgotten (its code would hold heap for good); the
# loop runs until the board resets.
from urbanpulse_fw import app, hw

loop = app.main()
del app
hw.unload("app")
loop.go()
