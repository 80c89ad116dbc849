# The WebAssembly port has no `machine`: the firmware's hw.py imports it, and the checks run
# on that port (tests/wasm/run.mjs) touch nothing of it.
