# Runs after boot.py. On the host the fleet runs this file with the board's folder as cwd.
from urbanpulse_fw import app

app.main()
