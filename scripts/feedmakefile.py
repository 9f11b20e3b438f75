"""Read the feed's OpenWrt Makefiles the way the SDK would, for the package writers.

scripts/mkipk (.ipk for opkg) and scripts/mkapk (.apk for apk-tools 3) both
build from openwrt/*/Makefile without the SDK; this module is what they
share: the package variables and `define` blocks, the control fields with
`$(VAR)` expanded, and the `Package/<name>/install` recipe (plain
$(INSTALL_*) and $(CP) lines, run here with the same meaning) or, for LuCI
apps (`include .../luci.mk`), luci.mk's layout: htdocs/ -> /www, root/ -> /.
"""

from __future__ import annotations

import glob
import os
import re
import shlex
import subprocess
from typing import Dict, List, Optional

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FEED = os.path.join(ROOT, "openwrt")

# luci.mk's postinst: after the default one, drop LuCI's caches and let rpcd see new ACLs
LUCI_POSTINST = """[ -n "${IPKG_INSTROOT}" ] || {
	rm -f /tmp/luci-indexcache.*
	rm -rf /tmp/luci-modulecache/
	killall -HUP rpcd 2>/dev/null
	exit 0
}
"""

MODES = {"INSTALL_DIR": None, "INSTALL_BIN": 0o755, "INSTALL_DATA": 0o644, "INSTALL_CONF": 0o600, "CP": "keep"}


class MakefileError(ValueError):
    pass


class FeedMakefile:
    """The parts of an OpenWrt package Makefile that packaging needs."""

    def __init__(self, path: str):
        self.path = path
        self.dir = os.path.dirname(os.path.abspath(path))
        self.vars: Dict[str, str] = {}
        self.defines: Dict[str, str] = {}
        self.includes: List[str] = []
        with open(path) as f:
            lines = f.read().split("\n")
        i = 0
        while i < len(lines):
            line = lines[i]
            m = re.match(r"define\s+(\S+)\s*$", line)
            if m:
                body = []
                i += 1
                while i < len(lines) and lines[i].strip() != "endef":
                    body.append(lines[i])
                    i += 1
                if i == len(lines):
                    raise MakefileError("%s: `define %s` has no endef" % (path, m.group(1)))
                self.defines[m.group(1)] = "\n".join(body)
            else:
                m = re.match(r"([A-Za-z0-9_]+)\s*[:+]?=\s*(.*)$", line)
                if m:
                    self.vars[m.group(1)] = m.group(2).strip()
                m = re.match(r"include\s+(\S+)", line)
                if m:
                    self.includes.append(m.group(1))
            i += 1
        self.is_luci = any(inc.endswith("luci.mk") for inc in self.includes)
        if self.is_luci and "PKG_NAME" not in self.vars:
            self.vars["PKG_NAME"] = os.path.basename(self.dir)

    def expand(self, text: str, extra: Optional[Dict[str, str]] = None) -> str:
        env = dict(self.vars)
        env.update(extra or {})

        def sub(m):
            name = m.group(1)
            if name not in env:
                raise MakefileError("%s: $(%s) is not known here" % (self.path, name))
            return env[name]
        for _ in range(5):
            new = re.sub(r"\$\(([A-Za-z0-9_]+)\)", sub, text)
            if new == text:
                break
            text = new
        return text.replace("$$", "$")

    def package_names(self) -> List[str]:
        if self.is_luci:
            return [self.vars["PKG_NAME"]]
        return [k.split("/", 1)[1] for k in self.defines if re.match(r"Package/[^/]+$", k)]

    def fields(self, name: str) -> Dict[str, str]:
        if self.is_luci:
            # luci.mk's Package/<name>, its URL and MAINTAINER defaults naming LuCI itself
            return {"TITLE": self.vars.get("LUCI_TITLE", name), "DEPENDS": self.vars.get("LUCI_DEPENDS", ""),
                    "SECTION": "luci", "CATEGORY": "LuCI", "PKGARCH": self.vars.get("LUCI_PKGARCH", "all"),
                    "URL": self.expand(self.vars.get("LUCI_URL", "https://github.com/openwrt/luci")),
                    "MAINTAINER": self.expand(self.vars.get("LUCI_MAINTAINER", "OpenWrt LuCI community"))}
        out = {"MAINTAINER": self.expand(self.vars.get("PKG_MAINTAINER", ""))}    # package-defaults.mk
        for line in self.defines["Package/" + name].split("\n"):
            m = re.match(r"\s*([A-Z_]+)\s*:?=\s*(.*)$", line)
            if m:
                out[m.group(1)] = self.expand(m.group(2).strip())
        return out

    def version(self) -> str:
        v = self.vars.get("PKG_VERSION", "0")
        rel = self.vars.get("PKG_RELEASE")
        return "%s-r%s" % (v, rel) if rel else v

    def source(self) -> str:
        """package.mk's SOURCE: the package's directory below the build tree (feeds/<feed>/<dir>)."""
        return "feeds/sipalg/" + os.path.relpath(self.dir, ROOT)     # the feed is the repository root (README)

    def description_lines(self, name: str) -> List[str]:
        """Package/<name>/description (LuCI apps: LUCI_DESCRIPTION), one entry per non-blank line."""
        desc = self.defines.get("Package/%s/description" % name,
                                self.vars.get("LUCI_DESCRIPTION", self.fields(name).get("TITLE", name))).strip("\n")
        return [ln.strip() for ln in desc.split("\n") if ln.strip()]

    def conffiles(self, name: str) -> List[str]:
        return [c.strip() for c in self.defines.get("Package/%s/conffiles" % name, "").split("\n") if c.strip()]

    def custom_scripts(self, name: str) -> Dict[str, str]:
        """The package's own postinst/prerm bodies ($(VAR) expanded, `$$` as `$`), as -pkg scripts take them."""
        custom = {"postinst": self.defines.get("Package/%s/postinst" % name),
                  "prerm": self.defines.get("Package/%s/prerm" % name)}
        if self.is_luci:
            custom["postinst"] = "#!/bin/sh\n" + LUCI_POSTINST
        return {k: self.expand(v.strip("\n") + "\n") for k, v in custom.items() if v}


def depends(spec: str) -> List[str]:
    """DEPENDS as package names: `+` (select) and `@` (config) markers dropped, conditionals skipped."""
    deps = []
    for tok in spec.split():
        tok = tok.lstrip("+@")
        if tok and not tok.startswith("("):
            deps.append(tok)
    return deps


def run_install(mk: FeedMakefile, name: str, dest: str) -> None:
    """Carry out Package/<name>/install: each line one $(INSTALL_*) or $(CP) with sources and a target."""
    recipe = mk.defines.get("Package/%s/install" % name)
    if recipe is None:
        raise MakefileError("%s: no Package/%s/install" % (mk.path, name))
    for raw in recipe.split("\n"):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        m = re.match(r"\$\((INSTALL_DIR|INSTALL_BIN|INSTALL_DATA|INSTALL_CONF|CP)\)\s+(.*)$", line)
        if not m:
            raise MakefileError("%s: install line not understood (only $(INSTALL_*) and $(CP)): %s"
                                % (mk.path, line))
        op, args = m.group(1), shlex.split(mk.expand(m.group(2), {"1": dest, "PKG_BUILD_DIR": ROOT}))
        if op == "INSTALL_DIR":
            for d in args:
                os.makedirs(d, exist_ok=True)
                os.chmod(d, 0o755)
            continue
        *sources, target = args
        files = []
        for s in sources:
            s = os.path.join(mk.dir, s)
            hits = sorted(glob.glob(s))
            if not hits:
                raise MakefileError("%s: %s matches no file" % (mk.path, s))
            files += hits
        for src in files:
            out = os.path.join(target, os.path.basename(src)) if os.path.isdir(target) else target
            with open(src, "rb") as f:
                data = f.read()
            with open(out, "wb") as f:
                f.write(data)
            mode = MODES[op]
            os.chmod(out, (os.stat(src).st_mode & 0o777) if mode == "keep" else mode)


def luci_install(mk: FeedMakefile, dest: str) -> None:
    """luci.mk: htdocs/ goes to /www, root/ to /, modes kept."""
    for sub, to in (("htdocs", "www"), ("root", "")):
        top = os.path.join(mk.dir, sub)
        for dirpath, dirnames, filenames in os.walk(top):
            dirnames.sort()
            rel = os.path.relpath(dirpath, top)
            outdir = os.path.normpath(os.path.join(dest, to, rel))
            os.makedirs(outdir, exist_ok=True)
            os.chmod(outdir, 0o755)
            for fn in sorted(filenames):
                src = os.path.join(dirpath, fn)
                out = os.path.join(outdir, fn)
                with open(src, "rb") as f, open(out, "wb") as g:
                    g.write(f.read())
                os.chmod(out, 0o755 if os.access(src, os.X_OK) else 0o644)


def stage(mk: FeedMakefile, name: str, dest: str) -> None:
    """The package's data tree in dest, as the SDK's install step leaves it."""
    os.makedirs(dest, exist_ok=True)
    if mk.is_luci:
        luci_install(mk, dest)
    else:
        run_install(mk, name, dest)
    for c in mk.conffiles(name):
        if not os.path.exists(dest + c):
            raise MakefileError("conffile %s is not in the package" % c)


def feed_makefiles(selected: Optional[List[str]] = None) -> List[FeedMakefile]:
    """The feed's package Makefiles: those named (directories under openwrt/), or all of them."""
    dirs = selected or sorted(d for d in os.listdir(FEED) if os.path.exists(os.path.join(FEED, d, "Makefile")))
    return [FeedMakefile(os.path.join(FEED, os.path.basename(d.rstrip("/")), "Makefile")) for d in dirs]


def source_date_epoch() -> int:
    if os.environ.get("SOURCE_DATE_EPOCH"):
        return int(os.environ["SOURCE_DATE_EPOCH"])
    r = subprocess.run(["git", "-C", ROOT, "log", "-1", "--format=%ct"], stdout=subprocess.PIPE,
                       stderr=subprocess.DEVNULL)
    return int(r.stdout.strip() or 0) if r.returncode == 0 else 0
