# Sent by `urbanpulse flash` to the board over mpremote (compiled there, never stored), with a
# call of prepare() appended: removes an earlier firmware (a stale .py would shadow its .mpy;
# main.py first, so that a copy cut short starts nothing), updates installed over the air (the
# firmware copied now is the one to run) and the hold marker (hold.py: this copy is what it
# held the board for), and makes the package directories.
import os


def rm(p: str) -> None:
    try:
        for e in os.ilistdir(p):
            rm(p + "/" + e[0])
        os.rmdir(p)
    except OSError:
        try:
            os.remove(p)
        except OSError:
            pass


def prepare(package: str, dirs: list[str]) -> None:
    rm("main.py")
    rm(package)
    rm("ota")
    rm("hold")
    for d in dirs:
        os.mkdir(d)
