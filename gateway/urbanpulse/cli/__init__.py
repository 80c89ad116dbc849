"""The ``urbanpulse`` command; each command imports what it needs when it runs."""
