"""How UrbanPulse's own clients connect to the MQTT broker (credentials, TLS)."""
