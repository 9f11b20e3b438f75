#!/usr/bin/env python3
"""Read an apk-tools 3 package and check it the way `apk add` reads it.

Our own reader, written from apk-tools 3.0.x (src/adb.c __adb_m_stream and
adb_r_*, src/adb_comp.c adb_decompress, src/extract_v3.c, src/apk_adb.c
schemas, src/version.c apk_version_validate, src/package.c apk_dep_parse and
apk_pkgtmpl_from_adb) and kept apart from scripts/apkv3.py on purpose, so a
slip in the writer shows up here.  It checks:

* the stream: `ADB.` (uncompressed), `ADBd` (raw deflate) or `ADBc` + spec
  (deflate only: OpenWrt builds apk without zstd), magic and the `pckg`
  schema, block order ADB, SIG*, DATA*; block sizes and 8-byte padding; an
  ADB block of at least 16 bytes with compat version 0; no SIG block is
  fine (apk wants --allow-untrusted then, as for OpenWrt's own packages);
* every value: type code, bounds of its data, 4-byte alignment of objects and
  large ints, blob length prefixes aligned to their width, object counts;
* the package: info fields each of its schema type; name and dependency
  names of apk's characters, version strings apk's version parser accepts,
  the 20-byte package id equal to the sha256 of the ADB block taken with the
  id zeroed (as mkpkg fills it in); paths and files sorted as mkpkg sorts
  them; file names without `/`; acl mode/user/group; a sha256 per regular
  file; link targets; installed-size the sum of the file sizes; scripts of
  the known kinds;
* the DATA blocks: one per non-empty regular file, in path/file order, with
  the (path, file) index and the size the ADB block gives, its sha256 the
  file's hash, and none missing.
"""

from __future__ import annotations

import hashlib
import os
import stat
import struct
import sys
import zlib
from typing import Dict, List, Optional

MAGIC = b"ADB."
SCHEMA_PCKG = b"pckg"

# value type codes (adb.h ADB_TYPE_*), top 4 bits of a value
SPECIAL, INT, INT32, INT64, BLOB8, BLOB16, BLOB32, ARRAY, OBJECT = 0x0, 0x1, 0x2, 0x3, 0x8, 0x9, 0xA, 0xD, 0xE

# schemas as apk_adb.c declares them: slot -> (name, kind); kinds: str, name, version, blob (raw bytes),
# int, oct, deps, tags, or a nested schema
PKGINFO = {1: ("name", "name"), 2: ("version", "version"), 3: ("hashes", "blob"), 4: ("description", "str"),
           5: ("arch", "str"), 6: ("license", "str"), 7: ("origin", "str"), 8: ("maintainer", "str"),
           9: ("url", "str"), 10: ("repo-commit", "blob"), 11: ("build-time", "int"),
           12: ("installed-size", "int"), 13: ("file-size", "int"), 14: ("provider-priority", "int"),
           15: ("depends", "deps"), 16: ("provides", "deps"), 17: ("replaces", "deps"),
           18: ("install-if", "deps"), 19: ("recommends", "deps"), 20: ("layer", "int"), 21: ("tags", "tags")}
PACKAGE = {1: ("info", "pkginfo"), 2: ("paths", "dirs"), 3: ("scripts", "scripts"), 4: ("triggers", "strings"),
           5: ("replaces-priority", "int")}
DIR = {1: ("name", "str"), 2: ("acl", "acl"), 3: ("files", "files")}
FILE = {1: ("name", "str"), 2: ("acl", "acl"), 3: ("size", "int"), 4: ("mtime", "int"), 5: ("hash", "blob"),
        6: ("target", "blob")}
ACL = {1: ("mode", "oct"), 2: ("user", "str"), 3: ("group", "str"), 4: ("xattrs", "strings")}
SCRIPTS = {1: ("trigger", "blob"), 2: ("pre-install", "blob"), 3: ("post-install", "blob"),
           4: ("pre-deinstall", "blob"), 5: ("post-deinstall", "blob"), 6: ("pre-upgrade", "blob"),
           7: ("post-upgrade", "blob")}
DEPENDENCY = {1: ("name", "str"), 2: ("version", "version"), 3: ("match", "int")}

NAME_CHARS = set(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+-._")
DEP_NAME_CHARS = NAME_CHARS | set(b",:/[]")
TAG_CHARS = NAME_CHARS | set(b",:/[]=")
SUFFIXES = ("alpha", "beta", "pre", "rc", "cvs", "svn", "git", "hg", "p")
# apk_version.h: EQUAL 1, LESS 2, GREATER 4, FUZZY 8 (CONFLICT 16 on top); as apk_version_op_string shows them
VERSION_OPS = {1: "=", 2: "<", 3: "<=", 4: ">", 5: ">=", 6: "><", 8: "~", 9: "~", 11: "<~", 13: ">~"}


class ApkError(ValueError):
    pass


def version_ok(v: str) -> bool:
    """apk_version_validate's token machine: digit{.digit}...{letter}{_suf{#}}...{~hash}{-r#}."""
    DIGIT, LETTER, SUFFIX, SUFFIX_NO, HASH, REVISION = 1, 2, 3, 4, 5, 6
    n = len(v)

    def digits(i):
        j = i
        while j < n and "0" <= v[j] <= "9":
            j += 1
        return j
    i = digits(0)
    if i == 0:
        return False
    token = 0                                        # the initial number
    while i < n:
        c = v[i]
        if "a" <= c <= "z":
            if token > DIGIT:
                return False
            token, i = LETTER, i + 1
        elif c == "." or "0" <= c <= "9":
            if c == ".":
                if token > DIGIT:
                    return False
                i += 1
            if token <= DIGIT:
                token = DIGIT
            elif token == SUFFIX:
                token = SUFFIX_NO
            else:
                return False
            j = digits(i)
            if j == i:
                return False
            i = j
        elif c == "_":
            if token > SUFFIX_NO:
                return False
            j = i + 1
            while j < n and "a" <= v[j] <= "z":
                j += 1
            if v[i + 1:j] not in SUFFIXES:
                return False
            token, i = SUFFIX, j
        elif c == "~":
            if token >= HASH:
                return False
            j = i + 1
            while j < n and v[j] in "0123456789abcdef":
                j += 1
            if j == i + 1:
                return False
            token, i = HASH, j
        elif c == "-":
            if token >= REVISION or v[i + 1:i + 2] != "r":
                return False
            j = digits(i + 2)
            if j == i + 2:
                return False
            token, i = REVISION, j
        else:
            return False
    return True


def name_ok(name: str) -> bool:
    b = name.encode()
    return bool(b) and chr(b[0]).isalnum() and b[0] < 128 and set(b) <= NAME_CHARS


def info_problems(info: Dict[str, object]) -> List[str]:
    """What apk mkpkg would refuse in these info fields (name, version, dependency syntax)."""
    out = []
    name, version = str(info.get("name", "")), str(info.get("version", ""))
    if not name_ok(name):
        out.append("package name %r: apk takes [a-zA-Z0-9.+_-] starting with a letter or digit" % name)
    if not version_ok(version):
        out.append("version %r: not an apk version (number{.number}{letter}{_suffix{n}}{~hash}{-rN})"
                   % version)
    for field in ("depends", "provides", "replaces", "install-if", "recommends"):
        for dep in info.get(field, []) or []:                        # type: ignore[union-attr]
            if not dep or not set(str(dep).encode()) <= DEP_NAME_CHARS:
                out.append("%s entry %r: not a dependency name apk takes" % (field, dep))
    return out


class Adb:
    """The ADB block: typed values read with adb_r_*'s bounds checks."""

    def __init__(self, buf: bytes):
        self.buf = buf

    def _at(self, offs: int, size: int, what: str) -> bytes:
        if offs + size > len(self.buf):
            raise ApkError("%s at %d+%d runs past the ADB block (%d bytes)" % (what, offs, size, len(self.buf)))
        return self.buf[offs:offs + size]

    @staticmethod
    def split(v: int):
        return v >> 28, v & 0x0FFFFFFF

    def blob(self, v: int, what: str) -> Optional[bytes]:
        t, offs = self.split(v)
        if v == 0:
            return None
        width = {BLOB8: 1, BLOB16: 2, BLOB32: 4}.get(t)
        if width is None:
            raise ApkError("%s: value type 0x%x where a blob belongs" % (what, t))
        if offs % width:
            raise ApkError("%s: blob length prefix at %d not aligned to %d" % (what, offs, width))
        n = int.from_bytes(self._at(offs, width, what), "little")
        return self._at(offs + width, n, what)

    def int(self, v: int, what: str) -> Optional[int]:
        t, offs = self.split(v)
        if v == 0:
            return None
        if t == INT:
            return offs
        if t in (INT32, INT64):
            if offs % 4:
                raise ApkError("%s: int at %d not 4-aligned" % (what, offs))
            size = 4 if t == INT32 else 8
            return int.from_bytes(self._at(offs, size, what), "little")
        raise ApkError("%s: value type 0x%x where an int belongs" % (what, t))

    def slots(self, v: int, what: str) -> List[int]:
        """An object's or array's slots 1..n-1 (index 0 of the result is slot 1)."""
        t, offs = self.split(v)
        if v == 0:
            return []
        if t not in (ARRAY, OBJECT):
            raise ApkError("%s: value type 0x%x where an object or array belongs" % (what, t))
        if offs % 4:
            raise ApkError("%s: object at %d not 4-aligned" % (what, offs))
        num = int.from_bytes(self._at(offs, 4, what), "little")
        if num == 0:
            raise ApkError("%s: object with a zero slot count" % what)
        return list(struct.unpack("<%dI" % (num - 1), self._at(offs + 4, 4 * (num - 1), what)))


def _decode(adb: Adb, v: int, kind: str, what: str):
    if v == 0:
        return None
    if kind in ("str", "name"):
        b = adb.blob(v, what)
        if b is None:
            return None
        s = b.decode("utf-8", "replace")
        if kind == "name" and not name_ok(s):
            raise ApkError("%s %r: not a package name apk takes" % (what, s))
        return s
    if kind == "version":
        b = adb.blob(v, what)
        if b is not None and not version_ok(b.decode("ascii", "replace")):
            raise ApkError("%s %r: apk's version parser refuses it" % (what, b))
        return None if b is None else b.decode()
    if kind == "blob":
        return adb.blob(v, what)
    if kind in ("int", "oct"):
        return adb.int(v, what)
    if kind == "strings":
        return [adb.blob(x, "%s[%d]" % (what, i)) for i, x in enumerate(adb.slots(v, what), 1)]
    if kind == "tags":
        tags = [_decode(adb, x, "str", "%s[%d]" % (what, i)) for i, x in enumerate(adb.slots(v, what), 1)]
        for t in tags:
            if not t or not set(t.encode()) <= TAG_CHARS:
                raise ApkError("%s: tag %r has characters apk refuses" % (what, t))
        return tags
    if kind == "deps":
        out = []
        for i, x in enumerate(adb.slots(v, what), 1):
            d = _object(adb, x, DEPENDENCY, "%s[%d]" % (what, i))
            if not d.get("name") or not set(d["name"].encode()) <= DEP_NAME_CHARS:
                raise ApkError("%s[%d]: dependency name %r apk refuses" % (what, i, d.get("name")))
            if d.get("match") is not None and d["match"] & ~16 not in VERSION_OPS:
                raise ApkError("%s[%d]: match operator %d is not one apk writes" % (what, i, d["match"]))
            out.append(d)
        names = [d["name"].encode() for d in out]
        if names != sorted(names):
            raise ApkError("%s: dependencies not sorted by name (mkpkg sorts them)" % what)
        return out
    if kind in ("files", "dirs"):
        schema = FILE if kind == "files" else DIR
        items = [_object(adb, x, schema, "%s[%d]" % (what, i)) for i, x in enumerate(adb.slots(v, what), 1)]
        names = [(it.get("name") or "").encode() for it in items]
        if names != sorted(names) or len(set(names)) != len(names):
            raise ApkError("%s: entries not sorted by name or not unique (mkpkg sorts them)" % what)
        return items
    schema = {"pkginfo": PKGINFO, "scripts": SCRIPTS, "acl": ACL}[kind]
    return _object(adb, v, schema, what)


def _object(adb: Adb, v: int, schema: Dict[int, tuple], what: str) -> Dict[str, object]:
    out: Dict[str, object] = {}
    for i, sv in enumerate(adb.slots(v, what), 1):
        if i not in schema:
            if sv:
                raise ApkError("%s: slot %d is set but the schema has no such field" % (what, i))
            continue
        name, kind = schema[i]
        val = _decode(adb, sv, kind, "%s.%s" % (what, name))
        if val is not None:
            out[name] = val
    return out


def decompress(blob: bytes) -> tuple:
    """(raw ADB stream, compression name), as adb_decompress sees the first four bytes."""
    head = blob[:4]
    if head[:3] != b"ADB":
        raise ApkError("not an apk v3 package: starts with %r, not ADB" % head)
    if head == MAGIC:
        return blob, "none"
    if head == b"ADBd":
        alg, rest = 1, blob[4:]
    elif head == b"ADBc":
        if len(blob) < 6:
            raise ApkError("ADBc without its compression spec")
        alg, rest = blob[4], blob[6:]
    else:
        raise ApkError("unknown ADB compression marker %r" % head)
    if alg == 0:
        return rest, "none"
    if alg != 1:
        raise ApkError("compression %d: OpenWrt's apk is built with deflate only (no zstd)" % alg)
    d = zlib.decompressobj(-15)
    try:
        raw = d.decompress(rest) + d.flush()
    except zlib.error as e:
        raise ApkError("deflate stream broken: %s" % e) from None
    if not d.eof:
        raise ApkError("deflate stream truncated")
    return raw, "deflate"


def _blocks(raw: bytes):
    pos = 8
    while pos < len(raw):
        if pos + 4 > len(raw):
            raise ApkError("block header at %d truncated" % pos)
        ts = int.from_bytes(raw[pos:pos + 4], "little")
        kind, size, hdr = ts >> 30, ts & 0x3FFFFFFF, 4
        if kind == 3:                                    # extended header: type in the low bits, u64 size
            if pos + 16 > len(raw):
                raise ApkError("extended block header at %d truncated" % pos)
            kind, size, hdr = ts & 0x3FFFFFFF, int.from_bytes(raw[pos + 8:pos + 16], "little"), 16
        if size < hdr:
            raise ApkError("block at %d: size %d smaller than its header" % (pos, size))
        padded = size + (-size % 8)
        if pos + padded > len(raw):
            raise ApkError("block at %d: %d bytes (padded) but only %d left" % (pos, padded, len(raw) - pos))
        yield kind, raw[pos + hdr:pos + size]
        pos += padded


def read(blob: bytes) -> Dict[str, object]:
    """The package as a dict (info, paths, scripts, signatures, compression), every check above applied."""
    raw, compression = decompress(blob)
    if len(raw) < 8 or raw[:4] != MAGIC:
        raise ApkError("no ADB. magic after decompression")
    if raw[4:8] != SCHEMA_PCKG:
        raise ApkError("schema %r is not a package (pckg)" % raw[4:8])
    adb_block, sigs, data = None, 0, []
    allowed = {0}
    for kind, payload in _blocks(raw):
        if kind not in allowed:
            raise ApkError("%s block out of order (ADB, then SIG, then DATA)"
                           % {0: "ADB", 1: "SIG", 2: "DATA"}.get(kind, "type %d" % kind))
        if kind == 0:
            if len(payload) < 16:
                raise ApkError("ADB block of %d bytes is too short" % len(payload))
            if payload[0] != 0:
                raise ApkError("ADB compat version %d, apk reads 0" % payload[0])
            adb_block, allowed = payload, {1, 2}
        elif kind == 1:
            sigs += 1
        else:
            allowed = {2}
            data.append(payload)
    if adb_block is None:
        raise ApkError("no ADB block")
    adb = Adb(adb_block)
    root = int.from_bytes(adb_block[4:8], "little")
    pkg = _object(adb, root, PACKAGE, "package")
    info = pkg.get("info") or {}
    for need in ("name", "version"):
        if need not in info:
            raise ApkError("info.%s missing" % need)
    if not info.get("arch"):
        raise ApkError("info.arch missing (OpenWrt sets noarch or the package architecture)")
    expect = []
    total = 0
    for pi, d in enumerate(pkg.get("paths", []), 1):
        if "acl" not in d:
            raise ApkError("path %r has no acl" % d.get("name", ""))
        for fi, f in enumerate(d.get("files", []), 1):
            where = "%s/%s" % (d.get("name", ""), f.get("name"))
            if not f.get("name") or "/" in f["name"] or f["name"] in (".", ".."):
                raise ApkError("file name %r in %r" % (f.get("name"), d.get("name", "")))
            if "acl" not in f:
                raise ApkError("%s has no acl" % where)
            target = f.get("target")
            size = f.get("size", 0)
            if target is not None:
                if len(target) < 2:
                    raise ApkError("%s: link target without its mode" % where)
                mode = int.from_bytes(target[:2], "little")
                if mode not in (stat.S_IFLNK, stat.S_IFREG, stat.S_IFBLK, stat.S_IFCHR, stat.S_IFIFO):
                    raise ApkError("%s: target mode 0%o apk does not know" % (where, mode))
                continue
            h = f.get("hash")
            if h is None or len(h) not in (20, 32, 64):
                raise ApkError("%s: regular file without a sha1/sha256/sha512 hash" % where)
            total += size
            if size:
                expect.append((pi, fi, f, where))
            elif len(h) == 32 and h != hashlib.sha256(b"").digest():
                raise ApkError("%s: empty file whose hash is not that of no data" % where)
    if "installed-size" in info and info["installed-size"] != max(total, 1):
        raise ApkError("info.installed-size %d, files add up to %d" % (info["installed-size"], total))
    if len(data) > len(expect):
        raise ApkError("%d DATA blocks for %d non-empty files" % (len(data), len(expect)))
    for payload, (pi, fi, f, where) in zip(data, expect):
        if len(payload) < 8:
            raise ApkError("DATA block for %s without its path/file index" % where)
        got = struct.unpack("<II", payload[:8])
        if got != (pi, fi):
            raise ApkError("DATA block for path %d file %d where %s (%d, %d) comes next"
                           % (got[0], got[1], where, pi, fi))
        content = payload[8:]
        if len(content) != f["size"]:
            raise ApkError("%s: %d bytes of DATA, size says %d" % (where, len(content), f["size"]))
        algo = {20: "sha1", 32: "sha256", 64: "sha512"}[len(f["hash"])]
        if hashlib.new(algo, content).digest() != f["hash"]:
            raise ApkError("%s: DATA does not match its %s" % (where, algo))
        f["data"] = content
    if len(data) < len(expect):
        raise ApkError("no DATA block for %s" % expect[len(data)][3])
    uid = info.get("hashes")
    if uid is not None:
        if len(uid) != 20:
            raise ApkError("info.hashes is %d bytes; mkpkg writes a 20-byte package id" % len(uid))
        at = (adb.slots(adb.slots(root, "package")[0], "info")[2] & 0x0FFFFFFF) + 1
        zeroed = adb_block[:at] + bytes(20) + adb_block[at + 20:]
        if hashlib.sha256(zeroed).digest()[:20] != uid:
            raise ApkError("info.hashes is not the sha256 of the ADB block (package id corrupted)")
    pkg["signatures"] = sigs
    pkg["compression"] = compression
    return pkg


def verify(blob: bytes, tree: Optional[str] = None) -> Dict[str, object]:
    """read(), and with tree: the package holds exactly tree's files, directories and modes."""
    pkg = read(blob)
    if tree is None:
        return pkg
    want = {}
    for dirpath, dirnames, filenames in os.walk(tree):
        for n in dirnames + filenames:
            p = os.path.join(dirpath, n)
            st = os.lstat(p)
            rel = os.path.relpath(p, tree)
            if stat.S_ISDIR(st.st_mode):
                want[rel + "/"] = (stat.S_IMODE(st.st_mode), None)
            else:
                with open(p, "rb") as f:
                    want[rel] = (st.st_mode & 0o7777, hashlib.sha256(f.read()).digest())
    have = {}
    for d in pkg.get("paths", []):
        dname = d.get("name", "")
        if dname:
            have[dname + "/"] = (d["acl"].get("mode"), None)
        for f in d.get("files", []):
            have[os.path.join(dname, f["name"])] = (f["acl"].get("mode"), f.get("hash"))
    if have != want:
        diff = sorted(set(have.items()) ^ set(want.items()))
        raise ApkError("package and tree differ: %s" % ", ".join("%s %s" % (k, v[0]) for k, v in diff[:5]))
    return pkg


def dump(pkg: Dict[str, object]) -> str:
    lines = ["compression: %s" % pkg["compression"], "signatures: %d" % pkg["signatures"], "info:"]
    for k, v in pkg["info"].items():                                # type: ignore[union-attr]
        if k in ("depends", "provides", "replaces", "install-if", "recommends"):
            v = " ".join(("!" if d.get("match", 0) & 16 else "") + d["name"]
                         + (VERSION_OPS.get(d.get("match", 1) & ~16, "?") + d["version"] if "version" in d else "")
                         for d in v)
        elif isinstance(v, bytes):
            v = v.hex()
        lines.append("  %s: %s" % (k, v))
    lines.append("paths:")
    for d in pkg.get("paths", []):                                  # type: ignore[union-attr]
        acl = d["acl"]
        lines.append("  /%s %o %s:%s" % (d.get("name", ""), acl.get("mode", 0), acl.get("user"), acl.get("group")))
        for f in d.get("files", []):
            a = f["acl"]
            lines.append("    %s %o %s:%s %d %s" % (f["name"], a.get("mode", 0), a.get("user"), a.get("group"),
                                                    f.get("size", 0), (f.get("hash") or b"").hex()))
    lines.append("scripts: %s" % " ".join(sorted(pkg.get("scripts", {}))))   # type: ignore[arg-type]
    return "\n".join(lines)


def main(argv: Optional[List[str]] = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args:
        print("usage: apkread.py PACKAGE.apk...  (checks each as apk add reads it, and prints it)", file=sys.stderr)
        return 2
    rc = 0
    for path in args:
        try:
            with open(path, "rb") as f:
                print("%s:\n%s" % (path, dump(read(f.read()))))
        except (ApkError, OSError) as e:
            print("apkread: %s: %s" % (path, e), file=sys.stderr)
            rc = 1
    return rc


if __name__ == "__main__":
    sys.exit(main())
