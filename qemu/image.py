#!/usr/bin/env python3
"""Build the sipalg QEMU test image: `make qemu-image ARCH=x86_64|aarch64`.

Everything comes from Debian packages (bookworm) and this repository:

  base     mmdebstrap --variant=minbase with python3, nftables, iptables,
           conntrack, sipp, kamailio, tcpdump, pytest, dpkt ... as a
           compressed cpio (the initramfs is the root file system)
  kernel   the Debian kernel package (linux-image-amd64 / -arm64): its
           vmlinuz, the Raspberry Pi 3 device tree, and the netfilter,
           bridge, veth, virtio and 9p modules with their dependencies
  overlay  the VM's small OpenWrt emulation (qemu/guest/overlay: /init,
           /etc/rc.common, /lib/functions.sh, procd and uci stand-ins), the
           project's .ipk installed the way opkg does it (scripts/opkg-offline:
           data unpacked, control files recorded, postinst run, which enables
           the init script), and the test harness in /opt/sipalg-tests
           (tests/support with the lab, tests/lab, tests/qemu, the fw4-shaped
           ruleset in tests/openwrt) for the guest scenarios

The initramfs is the three compressed cpio archives one after the other (the
kernel unpacks them in turn), so each stage is cached on its own under
CACHE/ARCH, keyed by a hash of its inputs: a rebuild with nothing changed
takes about a second, a change in the repository rebuilds the overlay only
(about a second).  --refresh re-downloads base and kernel (security updates).
Nothing is downloaded except Debian packages; needs root (mmdebstrap, chroot,
device nodes) and, for aarch64, qemu-user-static with binfmt_misc.
"""

from __future__ import annotations

import argparse
import glob
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
OVERLAY = os.path.join(HERE, "guest", "overlay")

SUITE = "bookworm"
MIRROR = os.environ.get("QEMU_DEBIAN_MIRROR", "http://deb.debian.org/debian")
SECURITY = os.environ.get("QEMU_DEBIAN_SECURITY", "http://deb.debian.org/debian-security")
SOURCES = ["deb %s %s main" % (MIRROR, SUITE), "deb %s %s-updates main" % (MIRROR, SUITE),
           "deb %s %s-security main" % (SECURITY, SUITE)]

# what the guest needs: the router's tools, the lab's peers, the test runner
PACKAGES = ["python3", "nftables", "iptables", "conntrack", "iproute2", "kmod", "procps", "iputils-ping",
            "sip-tester", "kamailio", "tcpdump", "python3-pytest", "python3-pytest-timeout", "python3-dpkt",
            "busybox"]                  # its syslogd plays logd: the daemon logs to syslog, logread reads it
DPKG_EXCLUDES = ["/usr/share/doc/*", "/usr/share/man/*", "/usr/share/locale/*", "/usr/share/info/*",
                 "/usr/share/lintian/*"]

ARCHES = {
    "x86_64": {"deb": "amd64", "kernel": "linux-image-amd64", "binfmt": None, "modules": [], "dtbs": []},
    "aarch64": {"deb": "arm64", "kernel": "linux-image-arm64", "binfmt": "qemu-aarch64",
                "modules": ["bcm2835_wdt"], "dtbs": ["broadcom/bcm2837-rpi-3-b.dtb"]},
}
# every netfilter module (nft/xt/conntrack/nat/queue, so autoload finds what a rule needs),
# the lab's links, and the 9p share
MODULE_DIRS = ["kernel/net/netfilter", "kernel/net/ipv4/netfilter", "kernel/net/ipv6/netfilter",
               "kernel/net/bridge", "kernel/net/9p", "kernel/fs/9p", "kernel/drivers/virtio"]
MODULES = ["veth", "bridge", "br_netfilter", "nfnetlink_queue", "nft_queue", "9pnet_virtio", "9p", "virtio_pci"]

# bump when a stage's recipe changes in a way its inputs below don't show
BASE_RECIPE = 1
KERNEL_RECIPE = 2
OVERLAY_RECIPE = 1


def log(msg: str) -> None:
    print("qemu-image: %s" % msg, flush=True)


def run(cmd, **kw) -> subprocess.CompletedProcess:
    kw.setdefault("check", True)
    return subprocess.run(cmd, **kw)


def digest(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:16]


def file_hashes(paths) -> dict:
    out = {}
    for p in sorted(paths):
        with open(p, "rb") as f:
            out[os.path.relpath(p, ROOT)] = hashlib.sha256(f.read()).hexdigest()
    return out


def write_cpio(src: str, out: str, level: int, exclude=()) -> None:
    """src's tree as a newc cpio (owner root unless kept), zstd-compressed."""
    names = []
    for dirpath, dirnames, filenames in os.walk(src):
        dirnames.sort()
        for n in sorted(dirnames + filenames):
            rel = os.path.relpath(os.path.join(dirpath, n), src)
            if rel not in exclude:
                names.append(rel)
    tmp = out + ".tmp"
    with open(tmp, "wb") as f:
        cpio = subprocess.Popen(["cpio", "-o", "-H", "newc", "--quiet", "-0"], cwd=src, stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE)
        zstd = subprocess.Popen(["zstd", "-q", "-T0", "-%d" % level], stdin=cpio.stdout, stdout=f)
        cpio.stdout.close()
        cpio.stdin.write(b"".join(n.encode() + b"\0" for n in names))
        cpio.stdin.close()
        if cpio.wait() or zstd.wait():
            raise RuntimeError("cpio/zstd failed for %s" % src)
    os.replace(tmp, out)


def prune(directory: str, pattern: str, keep: str) -> None:
    for p in glob.glob(os.path.join(directory, pattern)):
        if os.path.basename(p) != keep:
            shutil.rmtree(p) if os.path.isdir(p) else os.unlink(p)


class Builder:
    def __init__(self, arch: str, cache: str, refresh: bool, ipk: str = None):
        self.arch = arch
        self.a = ARCHES[arch]
        self.cache = os.path.abspath(os.path.join(cache, arch))
        self.refresh = refresh
        self.ipk = ipk
        os.makedirs(self.cache, exist_ok=True)

    # -- base userland

    def base(self) -> str:
        key = digest({"suite": SUITE, "sources": SOURCES, "arch": self.a["deb"], "packages": PACKAGES,
                      "excludes": DPKG_EXCLUDES, "recipe": BASE_RECIPE})
        out = os.path.join(self.cache, "base-%s.cpio.zst" % key)
        if os.path.exists(out) and not self.refresh:
            return out
        self.ensure_binfmt()
        t0 = time.monotonic()
        tmp = os.path.join(self.cache, "tmp-base")
        shutil.rmtree(tmp, ignore_errors=True)
        cmd = ["mmdebstrap", "--variant=minbase", "--architectures=" + self.a["deb"], "--mode=root",
               "--include=" + ",".join(PACKAGES), "--quiet"]
        cmd += ["--dpkgopt=path-exclude=%s" % p for p in DPKG_EXCLUDES]
        # no daemon starts at install; apt lists and caches go
        cmd += ["--customize-hook=rm -rf \"$1\"/var/cache/apt/*.bin \"$1\"/var/lib/apt/lists/*"]
        log("base: mmdebstrap %s %s (%s)" % (SUITE, self.a["deb"], " ".join(PACKAGES)))
        run(cmd + [SUITE, tmp] + SOURCES)
        with open(os.path.join(self.cache, "base-%s.packages" % key), "w") as f:
            f.write(self.package_list(tmp))
        write_cpio(tmp, out, 12)
        shutil.rmtree(tmp)
        prune(self.cache, "base-*.cpio.zst", os.path.basename(out))
        prune(self.cache, "base-*.packages", "base-%s.packages" % key)
        log("base: %s (%.1f MB) in %.0f s" % (os.path.basename(out), os.path.getsize(out) / 1e6,
                                              time.monotonic() - t0))
        return out

    @staticmethod
    def package_list(root: str) -> str:
        with open(os.path.join(root, "var/lib/dpkg/status")) as f:
            entries = f.read().split("\n\n")
        pkgs = []
        for e in entries:
            fields = dict(re.findall(r"^(Package|Version|Architecture): (.*)$", e, re.M))
            if fields.get("Package"):
                pkgs.append("%s %s %s" % (fields["Package"], fields.get("Version"), fields.get("Architecture")))
        return "\n".join(sorted(pkgs)) + "\n"

    def ensure_binfmt(self) -> None:
        name = self.a["binfmt"]
        if name is None:
            return
        bf = "/proc/sys/fs/binfmt_misc"
        if not os.path.exists(os.path.join(bf, "register")):
            run(["mount", "-t", "binfmt_misc", "binfmt_misc", bf])
        if not os.path.exists(os.path.join(bf, name)):
            subprocess.run(["update-binfmts", "--enable", name])
        if not os.path.exists(os.path.join(bf, name)):
            raise SystemExit("qemu-image: %s binaries need binfmt_misc %s: apt-get install qemu-user-static "
                             "binfmt-support arch-test" % (self.arch, name))

    # -- kernel and modules

    def apt(self, *args: str) -> subprocess.CompletedProcess:
        d = os.path.join(self.cache, "apt")
        for sub in ("lists/partial", "cache/archives/partial"):
            os.makedirs(os.path.join(d, sub), exist_ok=True)
        with open(os.path.join(d, "sources.list"), "w") as f:
            f.write("\n".join(SOURCES) + "\n")
        return run([args[0]] + self.apt_opts() + list(args[1:]), stdout=subprocess.PIPE, text=True)

    def kernel(self):
        """(kernel.json's info, its directory)"""
        key = digest({"suite": SUITE, "sources": SOURCES, "arch": self.a["deb"], "kernel": self.a["kernel"],
                      "dirs": MODULE_DIRS, "modules": MODULES + self.a["modules"], "dtbs": self.a["dtbs"],
                      "recipe": KERNEL_RECIPE})
        out = os.path.join(self.cache, "kernel-%s" % key)
        info_path = os.path.join(out, "kernel.json")
        if os.path.exists(info_path) and not self.refresh:
            with open(info_path) as f:
                return json.load(f), out
        t0 = time.monotonic()
        tmp = out + ".tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        os.makedirs(tmp)
        self.apt("apt-get", "update")
        deps = self.apt("apt-cache", "depends", self.a["kernel"]).stdout
        m = re.search(r"Depends: (linux-image-[0-9][^\s]*)", deps)
        if not m:
            raise SystemExit("qemu-image: no kernel behind %s:\n%s" % (self.a["kernel"], deps))
        pkg = m.group(1)
        version = re.search(r"Candidate: (\S+)", self.apt("apt-cache", "policy", pkg).stdout).group(1)
        log("kernel: apt-get download %s %s" % (pkg, version))
        run(["apt-get"] + self.apt_opts() + ["download", pkg], cwd=tmp, stdout=subprocess.DEVNULL)
        deb = glob.glob(os.path.join(tmp, "linux-image-*.deb"))[0]
        x = os.path.join(tmp, "x")
        run(["dpkg-deb", "-x", deb, x])
        kv = os.listdir(os.path.join(x, "lib/modules"))[0]
        shutil.copy(os.path.join(x, "boot", "vmlinuz-" + kv), os.path.join(tmp, "vmlinuz"))
        dtbs = []
        for d in self.a["dtbs"]:
            shutil.copy(os.path.join(x, "usr/lib/linux-image-" + kv, d), os.path.join(tmp, os.path.basename(d)))
            dtbs.append(os.path.basename(d))
        n = self.select_modules(x, kv, os.path.join(tmp, "mods"))
        write_cpio(os.path.join(tmp, "mods"), os.path.join(tmp, "modules.cpio.zst"), 12)
        shutil.rmtree(x)
        shutil.rmtree(os.path.join(tmp, "mods"))
        os.unlink(deb)
        info = {"package": pkg, "version": version, "kv": kv, "vmlinuz": "vmlinuz", "dtbs": dtbs,
                "modules": "modules.cpio.zst", "module_count": n}
        with open(os.path.join(tmp, "kernel.json"), "w") as f:
            json.dump(info, f, indent=1)
        shutil.rmtree(out, ignore_errors=True)
        os.replace(tmp, out)
        prune(self.cache, "kernel-*", os.path.basename(out))
        log("kernel: %s %s, %d modules, in %.0f s" % (pkg, version, n, time.monotonic() - t0))
        return info, out

    def apt_opts(self):
        """A private apt state for the target architecture: the host's apt is left alone."""
        d = os.path.join(self.cache, "apt")
        return ["-o", "APT::Architecture=" + self.a["deb"], "-o", "APT::Architectures=" + self.a["deb"],
                "-o", "Dir::State::Lists=" + os.path.join(d, "lists"), "-o", "Dir::Cache=" + os.path.join(d, "cache"),
                "-o", "Dir::Etc::SourceList=" + os.path.join(d, "sources.list"),
                "-o", "Dir::Etc::SourceParts=/nonexistent", "-o", "Dir::State::Status=/dev/null",
                "-o", "APT::Sandbox::User=root", "-q"]

    def select_modules(self, x: str, kv: str, dest: str) -> int:
        """The wanted modules and what they depend on, with a fresh modules.dep, into dest/usr/lib/modules."""
        mdir = os.path.join(x, "lib/modules", kv)
        run(["depmod", "-b", x, kv])
        deps = {}
        with open(os.path.join(mdir, "modules.dep")) as f:
            for line in f:
                mod, _, rest = line.strip().partition(":")
                deps[mod] = rest.split()
        def modname(path):
            return re.sub(r"\.ko(\.\w+)?$", "", os.path.basename(path)).replace("-", "_")
        byname = {modname(m): m for m in deps}
        aliases = {}
        with open(os.path.join(mdir, "modules.alias")) as f:
            for line in f:
                w = line.split()
                if len(w) == 3 and w[0] == "alias" and w[2] in byname:
                    aliases.setdefault(w[1].replace("-", "_"), []).append(byname[w[2]])
        # softdeps (libcrc32c needs crc32c, which only an alias names): what modprobe loads besides modules.dep
        soft = {}
        with open(os.path.join(mdir, "modules.softdep")) as f:
            for line in f:
                w = line.split()
                if len(w) > 2 and w[0] == "softdep" and w[1] in byname:
                    names = [n.replace("-", "_") for n in w[2:] if not n.endswith(":")]
                    soft[byname[w[1]]] = [m for n in names for m in ([byname[n]] if n in byname else aliases.get(n, []))]
        want = {m for m in deps if any(m.startswith(d + "/") for d in MODULE_DIRS)}
        for name in MODULES + self.a["modules"]:
            if name.replace("-", "_") not in byname:
                raise SystemExit("qemu-image: module %s not in %s" % (name, kv))
            want.add(byname[name.replace("-", "_")])
        todo = list(want)
        while todo:
            m = todo.pop()
            for d in deps[m] + soft.get(m, []):
                if d not in want:
                    want.add(d)
                    todo.append(d)
        scratch = os.path.join(dest + ".depmod")
        sm = os.path.join(scratch, "lib/modules", kv)
        for m in want:
            os.makedirs(os.path.dirname(os.path.join(sm, m)), exist_ok=True)
            shutil.copy(os.path.join(mdir, m), os.path.join(sm, m))
        for f in ("modules.order", "modules.builtin", "modules.builtin.modinfo"):
            if os.path.exists(os.path.join(mdir, f)):
                shutil.copy(os.path.join(mdir, f), os.path.join(sm, f))
        run(["depmod", "-b", scratch, kv])
        os.makedirs(os.path.join(dest, "usr/lib/modules"))
        os.rename(sm, os.path.join(dest, "usr/lib/modules", kv))
        shutil.rmtree(scratch)
        return len(want)

    # -- overlay: OpenWrt emulation, the package, the harness

    def find_ipk(self) -> str:
        if self.ipk:
            return self.ipk
        found = sorted(glob.glob(os.path.join(ROOT, "dist", "sipalg_*_all.ipk")), key=os.path.getmtime)
        if not found:
            raise SystemExit("qemu-image: no dist/sipalg_*_all.ipk: run `make ipk` first")
        return found[-1]

    def harness_files(self):
        pats = ["alg/*.py", "alg/*/*.py", "tests/__init__.py", "tests/support/*.py", "tests/support/lab/*.py",
                "tests/support/lab/scenarios/*", "tests/lab/*.py", "tests/qemu/*.py", "tests/openwrt/*.nft",
                "pyproject.toml"]
        return sorted({p for pat in pats for p in glob.glob(os.path.join(ROOT, pat)) if os.path.isfile(p)})

    def overlay(self, kernel: dict) -> str:
        ipk = self.find_ipk()
        shims = [os.path.join(d, f) for d, _, fs in os.walk(OVERLAY) for f in fs]
        tools = [os.path.join(ROOT, "scripts", "opkg-offline")]
        key = digest({"ipk": file_hashes([ipk]), "overlay": file_hashes(shims), "harness": file_hashes(self.harness_files()),
                      "tools": file_hashes(tools), "kv": kernel["kv"], "arch": self.arch, "recipe": OVERLAY_RECIPE,
                      "modes": {os.path.relpath(p, ROOT): os.stat(p).st_mode & 0o111 for p in shims}})
        out = os.path.join(self.cache, "overlay-%s.cpio.zst" % key)
        if os.path.exists(out):
            return out
        t0 = time.monotonic()
        st = tempfile.mkdtemp(prefix="overlay-", dir=self.cache)
        try:
            for d in ("usr/bin", "usr/sbin", "usr/lib", "etc/config", "opt"):
                os.makedirs(os.path.join(st, d))
            for link in ("bin", "sbin", "lib"):                 # Debian's merged /usr, as in the base
                os.symlink("usr/" + link, os.path.join(st, link))
            shutil.copytree(OVERLAY, st, symlinks=True, dirs_exist_ok=True)
            # fw4 is the VM's stand-in (sbin/fw4); an empty firewall config lets the package's
            # uci-defaults add its include
            open(os.path.join(st, "etc/config/firewall"), "w").close()
            with open(os.path.join(st, "etc/sipalg-qemu-vm"), "w") as f:
                json.dump({"arch": self.arch, "kernel": kernel["package"], "kernel_version": kernel["version"],
                           "ipk": os.path.basename(ipk), "overlay": key}, f)
            log("overlay: opkg-offline install %s" % os.path.relpath(ipk, ROOT))
            r = run([sys.executable, tools[0], "install", st, ipk], stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT, text=True, check=False)
            if r.returncode != 0 or not os.path.exists(os.path.join(st, "etc/rc.d/S95sipalg")):
                raise SystemExit("qemu-image: installing %s failed (postinst must enable the init script):\n%s"
                                 % (ipk, r.stdout))
            h = os.path.join(st, "opt/sipalg-tests")
            for p in self.harness_files():
                dst = os.path.join(h, os.path.relpath(p, ROOT))
                os.makedirs(os.path.dirname(dst), exist_ok=True)
                shutil.copy2(p, dst)
            write_cpio(st, out, 3, exclude=("bin", "sbin", "lib"))
        finally:
            shutil.rmtree(st)
        prune(self.cache, "overlay-*.cpio.zst", os.path.basename(out))
        log("overlay: %s (%.1f MB) in %.1f s" % (os.path.basename(out), os.path.getsize(out) / 1e6,
                                                 time.monotonic() - t0))
        return out

    # -- the image

    def build(self) -> dict:
        t0 = time.monotonic()
        base = self.base()
        kernel, kdir = self.kernel()
        overlay = self.overlay(kernel)
        parts = [base, os.path.join(kdir, kernel["modules"]), overlay]
        img = os.path.join(self.cache, "image")
        os.makedirs(img, exist_ok=True)
        mpath = os.path.join(img, "manifest.json")
        manifest = {"arch": self.arch, "parts": [os.path.basename(p) for p in parts],
                    "kernel": kernel, "initrd": "initrd.img", "vmlinuz": "vmlinuz", "dtbs": kernel["dtbs"]}
        old = None
        if os.path.exists(mpath):
            with open(mpath) as f:
                old = json.load(f)
        if old != manifest or not os.path.exists(os.path.join(img, "initrd.img")):
            with open(os.path.join(img, "initrd.img.tmp"), "wb") as out:
                for p in parts:
                    with open(p, "rb") as f:
                        shutil.copyfileobj(f, out, 1 << 20)
            os.replace(os.path.join(img, "initrd.img.tmp"), os.path.join(img, "initrd.img"))
            for f in ["vmlinuz"] + kernel["dtbs"]:
                shutil.copy(os.path.join(kdir, f), os.path.join(img, f))
            with open(mpath, "w") as f:
                json.dump(manifest, f, indent=1)
            state = "built"
        else:
            state = "up to date"
        log("%s: %s/image (kernel %s, initrd %.1f MB) %s in %.1f s" % (
            self.arch, os.path.relpath(self.cache, os.getcwd()), kernel["kv"],
            os.path.getsize(os.path.join(img, "initrd.img")) / 1e6, state, time.monotonic() - t0))
        return manifest


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--arch", default="x86_64", choices=sorted(ARCHES) + ["amd64", "arm64"])
    ap.add_argument("--cache", default=os.path.join(ROOT, "build", "qemu"), help="build/cache directory")
    ap.add_argument("--ipk", help="the sipalg .ipk (default: the newest dist/sipalg_*_all.ipk)")
    ap.add_argument("--refresh", action="store_true", help="download base and kernel again")
    args = ap.parse_args(argv)
    args.arch = {"amd64": "x86_64", "arm64": "aarch64"}.get(args.arch, args.arch)
    if os.geteuid() != 0:
        print("qemu-image: needs root (mmdebstrap, chroot, device nodes)", file=sys.stderr)
        return 2
    for tool in ("mmdebstrap", "cpio", "zstd", "depmod", "dpkg-deb", "apt-get"):
        if shutil.which(tool) is None:
            print("qemu-image: needs %s (apt-get install mmdebstrap cpio zstd kmod)" % tool, file=sys.stderr)
            return 2
    Builder(args.arch, args.cache, args.refresh, args.ipk).build()
    return 0


if __name__ == "__main__":
    sys.exit(main())
