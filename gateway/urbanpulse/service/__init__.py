"""What systemd runs: the gateway service.

The MQTT session, the telemetry/health/status channels, batching with ack after store,
the disk spool, duplicate detection, liveness, /metrics and sd_notify.
"""
