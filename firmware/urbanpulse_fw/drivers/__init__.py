# Sensor drivers written from the chips' datasheets, one small module per chip; sensors.py
# imports only those a board's config.json names. They talk to machine-API objects made by
# bus.py (real ones on the ESP32, emulated chips from firmware/host/ on a PC).
