# Runs first at every start of the board. Keep it minimal: main.py does the work.
import gc

gc.collect()
print("UrbanPulse firmware")
