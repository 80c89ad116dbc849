"""Quoting for InfluxQL, the one place every query text gets its names and strings from."""


def ident(name: str) -> str:
    """A quoted identifier (database, measurement, field, tag, user)."""
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def string(text: str) -> str:
    """A quoted string literal (a tag value, a password)."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"
