// Runs firmware checks (tests/mpy/check_*.py) on the 32-bit MicroPython WebAssembly port,
// with tests/mpy/runner.py's run() (PASS or FAIL per test_ function):
//   URBANPULSE_WASM_MICROPYTHON=.../micropython.mjs node tests/wasm/run.mjs MODULE [FUNC]
// (tests/firmware/test_firmware_wasm.py installs the npm package and sets the variable.)
// The firmware and the checks are copied into the port's in-memory filesystem. Exit 1 if any
// failed.
import { readFileSync, readdirSync, statSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const { loadMicroPython } = await import(
  process.env.URBANPULSE_WASM_MICROPYTHON ?? "@micropython/micropython-webassembly-pyscript");

const root = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
const [module, only] = process.argv.slice(2);
const out = [];
const mp = await loadMicroPython({ heapsize: 4 * 1024 * 1024, stdout: (l) => out.push(l),
                                   stderr: (l) => out.push(l) });

function copy(from, to) {
  mp.FS.mkdirTree(to);
  for (const name of readdirSync(from)) {
    const path = join(from, name);
    if (statSync(path).isDirectory()) {
      if (name !== "__pycache__") copy(path, `${to}/${name}`);
    } else if (name.endsWith(".py")) {
      mp.FS.writeFile(`${to}/${name}`, readFileSync(path));
    }
  }
}
copy(join(root, "firmware", "urbanpulse_fw"), "/fw/urbanpulse_fw");
copy(join(root, "tests", "mpy"), "/mpy");
mp.FS.mkdirTree("/standin");
mp.FS.writeFile("/standin/machine.py", readFileSync(join(root, "tests", "wasm", "machine.py")));
mp.FS.mkdirTree("/tmp/checks");

try {
  mp.runPython(`
import os, sys
sys.path[:0] = ["/mpy", "/fw", "/standin"]
os.chdir("/tmp/checks")
import time
print("PORT maxsize=%d ticks_period=%d" % (sys.maxsize, time.ticks_add(0, -1) + 1))
import runner
runner.run(${JSON.stringify(module)}, ${JSON.stringify(only ?? "")} or None)
`);
} catch (e) {
  out.push(`FAIL ${module}: ${e.type ?? "error"}: ${String(e.message ?? e).slice(0, 800)}`);
}
console.log(out.join("\n"));
process.exit(out.some((l) => l.startsWith("FAIL")) ? 1 : 0);
