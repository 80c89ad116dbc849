# The board's TLS to the broker, set up once at start while the heap is whole (startup.py):
# the city's CA alone is trusted (config mqtt.tls.ca_file, DER, given as cadata), and the
# broker's certificate must name the expected host (mqtt.Client). A module of its own,
# unloaded after use: boards without TLS carry none of it.


def context(ca_file):
    import ssl

    with open(ca_file, "rb") as f:
        ca = f.read()
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    # MicroPython's client default is CERT_NONE (any certificate, any name); the stubs lag
    # the attribute.
    ctx.verify_mode = ssl.CERT_REQUIRED  # type: ignore[attr-defined]
    ctx.load_verify_locations(cadata=ca)
    return ctx
