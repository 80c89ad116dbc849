"""UrbanPulse: smart-city sensor platform (gateway, tools, fleet simulator)."""

__version__ = "0.1.0"
