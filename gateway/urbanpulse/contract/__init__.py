"""The wire contract (CONTRACT.md): vocabulary, message validation, topics, line protocol.

Imports nothing else of UrbanPulse; every other package builds on it.
"""
