// Run the pure core's tests (or one script) under real MicroPython compiled to WebAssembly.
//
//   node tests/mpy/run.mjs <alias> [TESTDIR...]             core tests; TESTDIR defaults to tests/core
//   node tests/mpy/run.mjs <alias> --script FILE.py [ARG...]  run FILE as __main__ (benchmarks)
//
// <alias> is a dependency of tests/mpy/package.json: mpy-1.23 (OpenWrt 24.10) or mpy-1.28
// (current); "1.23" works too. Install them with `npm ci --prefix tests/mpy`.
// The build has no host filesystem, so alg/__init__.py, alg/core/*.py, the entry
// (tests/mpy/core_suite.py) and the files of each TESTDIR (or FILE's directory) are copied
// into its in-memory FS under /app at their repo-relative paths (a directory outside the
// repo goes to /app/ext<N>). Exit status: 1 if Python raised, n for sys.exit(n), 2 on bad usage.
// Env MPY_HEAP: initial heap in bytes (this build grows it on demand).
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const HERE = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.resolve(HERE, "..", "..");
const pkg = JSON.parse(fs.readFileSync(path.join(HERE, "package.json"), "utf8"));
const ALIASES = Object.keys(pkg.dependencies);

function usage(msg) {
  if (msg) console.error(`run.mjs: ${msg}`);
  console.error(`usage: node tests/mpy/run.mjs <${ALIASES.join("|")}> [TESTDIR...]\n` +
                `       node tests/mpy/run.mjs <alias> --script FILE.py [ARG...]`);
  process.exit(2);
}

let [alias, ...rest] = process.argv.slice(2);
if (!alias) usage();
if (!alias.startsWith("mpy-")) alias = `mpy-${alias}`;
if (!ALIASES.includes(alias)) usage(`unknown MicroPython version ${JSON.stringify(alias)}`);
const pkgDir = path.join(HERE, "node_modules", alias);
if (!fs.existsSync(path.join(pkgDir, "micropython.mjs")))
  usage(`${alias} is not installed: run npm ci --prefix tests/mpy`);

// MicroPython writes byte by byte; pass each line through as soon as it ends, and the rest at exit
// (linebuffer mode would silently drop a last line that has no newline).
const sink = (fd, buf = []) => (c) => {
  if (c) buf.push(c[0]);
  if ((!c || c[0] === 10) && buf.length) { fs.writeSync(fd, Uint8Array.from(buf)); buf.length = 0; }
};
const out = sink(1), err = sink(2);
const { loadMicroPython } = await import(pathToFileURL(path.join(pkgDir, "micropython.mjs")).href);
const mp = await loadMicroPython({
  heapsize: Number(process.env.MPY_HEAP || 2 << 20), linebuffer: false, stdout: out, stderr: err,
});

let extCount = 0;
/** Where a host directory lands in the MicroPython FS: same relative path under /app. */
function mpPath(hostDir) {
  const rel = path.relative(ROOT, path.resolve(hostDir));
  if (rel === "" ) return "/app";
  if (rel.startsWith("..") || path.isAbsolute(rel)) return `/app/ext${extCount++}`;
  return "/app/" + rel.split(path.sep).join("/");
}
/** Copy the regular files of hostDir (not recursively) to mpDir. */
function copyDir(hostDir, mpDir, filter = () => true) {
  if (!fs.statSync(hostDir, { throwIfNoEntry: false })?.isDirectory())
    usage(`not a directory: ${hostDir}`);
  mp.FS.mkdirTree(mpDir);
  for (const e of fs.readdirSync(hostDir, { withFileTypes: true }))
    if (e.isFile() && filter(e.name)) mp.FS.writeFile(`${mpDir}/${e.name}`, fs.readFileSync(path.join(hostDir, e.name)));
}

// The pure core only: the shell (alg/*.py other than __init__) needs CPython.
copyDir(path.join(ROOT, "alg"), "/app/alg", (n) => n === "__init__.py");
copyDir(path.join(ROOT, "alg", "core"), "/app/alg/core", (n) => n.endsWith(".py"));
copyDir(HERE, "/app/tests/mpy", (n) => n === "core_suite.py");
mp.FS.chdir("/app");

let code;
if (rest[0] === "--script") {
  const [, file, ...args] = rest;
  if (!file) usage("--script needs a file");
  const dir = mpPath(path.dirname(file));
  copyDir(path.dirname(file), dir);
  const target = `${dir}/${path.basename(file)}`;
  code = run(`import sys\nsys.path.insert(0, "/app")\nsys.path.insert(0, ${JSON.stringify(dir)})\n` +
             `sys.argv.clear()\nsys.argv.extend(${JSON.stringify([target, ...args])})\n` +
             `exec(compile(open(${JSON.stringify(target)}).read(), ${JSON.stringify(target)}, "exec"))`);
} else {
  const dirs = (rest.length ? rest : [path.join(ROOT, "tests", "core")]).map((d) => {
    const to = mpPath(d);
    copyDir(d, to);
    return to;
  });
  code = run(`import sys\nsys.path.insert(0, "/app/tests/mpy")\n` +
             `sys.argv.clear()\nsys.argv.extend(${JSON.stringify(["core_suite", ...dirs])})\n` +
             `import core_suite`);
}
process.exit(code);

/** Run code in __main__; map the Python outcome to an exit status like the unix port does. */
function run(src) {
  let code = 0, msg = "";
  try {
    mp.runPython(src);
  } catch (e) {
    if (e.name !== "PythonError") throw e;         // a JS-side failure: let Node report it
    const m = e.type === "SystemExit" && /SystemExit:? ?(.*)\n*$/.exec(e.message);
    if (!m) [code, msg] = [1, e.message];          // any other exception: its traceback, exit 1
    else if (m[1] === "" || m[1] === "None") code = 0;
    else if (/^-?\d+$/.test(m[1])) code = Number(m[1]);
    else [code, msg] = [1, m[1] + "\n"];           // sys.exit("message")
  }
  out(); err();
  if (msg) fs.writeSync(2, msg.endsWith("\n") ? msg : msg + "\n");
  return code;
}
