"""Writing points to InfluxDB (v1 and v2 APIs) and setting aside what it refuses for good."""
