"""City KPIs (CONTRACT.md "KPI definitions", schema in /README.md "KPIs").

Pure formulas live in small modules (aqi, noise, parking, traffic, streetlight, sun, water,
network, windows); ``engine`` reads stored telemetry from InfluxDB, applies them per window,
device, site and district, and writes the ``kpi_*`` measurements.
"""
