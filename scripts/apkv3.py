"""Write apk-tools 3 packages: the ADB container with the `pckg` schema.

Written from apk-tools 3.0.x's own format (doc/apk-v3.5.scd, src/adb.h,
src/adb.c, src/apk_adb.[ch], src/app_mkpkg.c, src/adb_comp.c) and laid out
as `apk mkpkg` lays it out, so an .apk from here and one from mkpkg with the
same files, info and scripts are the same bytes:

* a value is a little-endian u32: type in the top 4 bits, an immediate or an
  offset into the ADB block in the low 28; blobs carry a u8/u16/u32 length
  prefix aligned to its own size, ints >= 2**28 and objects are 4-aligned;
  identical data is written once (mkpkg's write cache), except the package
  hash which is patched in place afterwards;
* objects and arrays are `[count, slot1, ...]` with trailing empty slots
  dropped; mkpkg commits the dependency, file and path lists with the object
  type code, and so do we (apk reads either);
* the stream is `ADB.` + schema `pckg`, one ADB block, no SIG block (an
  unsigned package, as OpenWrt 25.12 builds them: `apk add --allow-untrusted`),
  then one DATA block per non-empty regular file in path/file order, each
  block `u32 type<<30 | 4+len`, padded to 8 bytes;
* the whole stream is deflated (raw, level 9) behind an `ADBd` prefix, which
  is mkpkg's default and what OpenWrt ships.
"""

from __future__ import annotations

import hashlib
import os
import stat
import struct
import zlib
from typing import Dict, List, Optional, Sequence, Tuple

SCHEMA_PACKAGE = 0x676B6370          # "pckg"
FORMAT_MAGIC = b"ADB."

T_INT, T_INT32, T_INT64 = 0x10000000, 0x20000000, 0x30000000
T_BLOB8, T_BLOB16, T_BLOB32 = 0x80000000, 0x90000000, 0xA0000000
T_ARRAY, T_OBJECT = 0xD0000000, 0xE0000000
NULL = 0

BLOCK_ADB, BLOCK_SIG, BLOCK_DATA = 0, 1, 2

# schema_pkginfo slots (apk_adb.h ADBI_PI_*), in the order mkpkg fills them
PKGINFO = ("name", "version", "hashes", "description", "arch", "license", "origin", "maintainer", "url",
           "repo-commit", "build-time", "installed-size", "file-size", "provider-priority", "depends",
           "provides", "replaces", "install-if", "recommends", "layer", "tags")
PI = {n: i + 1 for i, n in enumerate(PKGINFO)}
INT_FIELDS = ("build-time", "provider-priority", "layer")
DEP_FIELDS = ("depends", "provides", "replaces", "install-if", "recommends")
SCRIPTS = ("trigger", "pre-install", "post-install", "pre-deinstall", "post-deinstall", "pre-upgrade",
           "post-upgrade")
PKG_INFO, PKG_PATHS, PKG_SCRIPTS = 1, 2, 3
FI_NAME, FI_ACL, FI_SIZE, FI_MTIME, FI_HASH, FI_TARGET = 1, 2, 3, 4, 5, 6
DI_NAME, DI_ACL, DI_FILES = 1, 2, 3
ACL_MODE, ACL_USER, ACL_GROUP = 1, 2, 3
DEP_NAME, DEP_VERSION, DEP_MATCH = 1, 2, 3
UID_LEN = 20                         # the package's unique id: sha256 of the ADB block, first 20 bytes


class AdbWriter:
    """An ADB block under construction (adb_w_*): header, then values appended as they are committed."""

    def __init__(self) -> None:
        self.buf = bytearray(8)      # adb_hdr: compat 0, version 0, reserved, root
        self._cache: Dict[bytes, int] = {}

    def _raw(self, data: bytes, align: int) -> int:
        self.buf += bytes(-len(self.buf) % align)
        offs = len(self.buf)
        self.buf += data
        return offs

    def _data(self, data: bytes, align: int, cache: bool = True) -> int:
        if not cache:
            return self._raw(data, align)
        offs = self._cache.get(data)
        if offs is None or offs % align:
            offs = self._cache[data] = self._raw(data, align)
        return offs

    def blob(self, b: bytes, cache: bool = True) -> int:
        if not b:
            return NULL
        if len(b) > 0xFFFF:
            return T_BLOB32 | self._data(struct.pack("<I", len(b)) + b, 4, cache)
        if len(b) > 0xFF:
            return T_BLOB16 | self._data(struct.pack("<H", len(b)) + b, 2, cache)
        return T_BLOB8 | self._data(bytes([len(b)]) + b, 1, cache)

    def int(self, n: int) -> int:
        if n >= 1 << 32:
            return T_INT64 | self._data(struct.pack("<Q", n), 4)
        if n >= 1 << 28:
            return T_INT32 | self._data(struct.pack("<I", n), 4)
        return T_INT | n

    def obj(self, slots: Sequence[int], kind: int = T_OBJECT) -> int:
        """slots[0] is slot 1; trailing NULLs go, an object with none set is NULL."""
        n = len(slots)
        while n and slots[n - 1] == NULL:
            n -= 1
        if not n:
            return NULL
        return kind | self._data(struct.pack("<%dI" % (n + 1), n + 1, *slots[:n]), 4)

    def root(self, val: int) -> None:
        struct.pack_into("<I", self.buf, 4, val)


def deps_value(w: AdbWriter, names: Sequence[str]) -> int:
    """A dependency list from plain (unversioned) names, sorted and unique as mkpkg commits it."""
    vals = [(n.encode(), w.obj([w.blob(n.encode())])) for n in names]
    out: List[int] = []
    for _, v in sorted(vals, key=lambda t: t[0]):
        if not out or out[-1] != v:
            out.append(v)
    return w.obj(out)


class Entry:
    """A file or symlink of the package tree."""

    def __init__(self, name: str, mode: int, data: Optional[bytes] = None, target: Optional[bytes] = None):
        self.name, self.mode, self.data, self.target = name, mode, data, target


def scan_tree(top: str) -> List[Tuple[str, int, List[Entry]]]:
    """(directory relative to top, mode, entries) for top and every directory below it, strcmp order."""
    dirs = [""]
    for dirpath, dirnames, _ in os.walk(top):
        for d in dirnames:
            if not os.path.islink(os.path.join(dirpath, d)):     # a link to a directory is a link
                dirs.append(os.path.relpath(os.path.join(dirpath, d), top))
    dirs.sort(key=lambda d: d.encode())
    out = []
    for d in dirs:
        full = os.path.join(top, d)
        entries = []
        for name in sorted(os.listdir(full), key=lambda n: n.encode()):
            p = os.path.join(full, name)
            st = os.lstat(p)
            if stat.S_ISDIR(st.st_mode):
                continue
            if stat.S_ISLNK(st.st_mode):
                entries.append(Entry(name, st.st_mode & 0o7777, target=os.fsencode(os.readlink(p))))
            elif stat.S_ISREG(st.st_mode):
                with open(p, "rb") as f:
                    entries.append(Entry(name, st.st_mode & 0o7777, data=f.read()))
            else:
                raise ValueError("%s: only files, directories and symlinks go into a package" % p)
        out.append((d, stat.S_IMODE(os.lstat(full).st_mode), entries))
    return out


def _block(kind: int, payload: bytes) -> bytes:
    raw = 4 + len(payload)
    if raw > 0x3FFFFFFF:
        raise ValueError("block of %d bytes needs the extended header, which packages never use" % raw)
    return struct.pack("<I", kind << 30 | raw) + payload + bytes(-raw % 8)


def package(info: Dict[str, object], tree: List[Tuple[str, int, List[Entry]]], scripts: Dict[str, bytes],
            mtime: int, compress: bool = True) -> bytes:
    """The .apk: info maps pkginfo names to str (lists of names for dependency fields, ints for the
    numeric ones); tree as scan_tree gives it; scripts maps script names to their text."""
    for k in info:
        if k not in PI or k in ("hashes", "installed-size", "file-size"):
            raise ValueError("info field %r is not one a package sets" % k)
    for k in scripts:
        if k not in SCRIPTS:
            raise ValueError("script %r is not an apk script type" % k)
    w = AdbWriter()
    pi = [NULL] * len(PKGINFO)
    for name in PKGINFO:
        v = info.get(name)
        if v is None:
            continue
        if name in DEP_FIELDS:
            pi[PI[name] - 1] = deps_value(w, v)                      # type: ignore[arg-type]
        elif name in INT_FIELDS:
            pi[PI[name] - 1] = w.int(int(v))                         # type: ignore[call-overload]
        else:
            pi[PI[name] - 1] = w.blob(str(v).encode())
    installed = 0
    paths = []
    data_files: List[Tuple[int, int, bytes]] = []
    for di, (dname, dmode, entries) in enumerate(tree, 1):
        files = []
        for fi, e in enumerate(entries, 1):
            fname = w.blob(e.name.encode())
            fhash = w.blob(hashlib.sha256(e.data).digest()) if e.data is not None else NULL
            target = w.blob(struct.pack("<H", stat.S_IFLNK) + e.target) if e.target is not None else NULL
            fmtime = w.int(mtime)
            size = len(e.data) if e.data is not None else len(e.target or b"")
            fsize = w.int(size)
            acl = w.obj([w.int(e.mode), w.blob(b"root"), w.blob(b"root")])
            files.append(w.obj([fname, acl, fsize, fmtime, fhash, target]))
            if e.data is not None:
                installed += len(e.data)
                if e.data:
                    data_files.append((di, fi, e.data))
        dn = w.blob(dname.encode())
        dacl = w.obj([w.int(dmode), w.blob(b"root"), w.blob(b"root")])
        paths.append(w.obj([dn, dacl, w.obj(files)]))
    pi[PI["installed-size"] - 1] = w.int(installed or 1)
    pi[PI["hashes"] - 1] = uid = w.blob(bytes(UID_LEN), cache=False)
    slots = [w.obj(pi), w.obj(paths)]
    if scripts:
        slots.append(w.obj([w.blob(scripts[s]) if s in scripts else NULL for s in SCRIPTS]))
    w.root(w.obj(slots))
    uid_at = (uid & 0x0FFFFFFF) + 1
    w.buf[uid_at:uid_at + UID_LEN] = hashlib.sha256(bytes(w.buf)).digest()[:UID_LEN]

    stream = [FORMAT_MAGIC, struct.pack("<I", SCHEMA_PACKAGE), _block(BLOCK_ADB, bytes(w.buf))]
    for di, fi, data in data_files:
        stream.append(_block(BLOCK_DATA, struct.pack("<II", di, fi) + data))
    raw = b"".join(stream)
    if not compress:
        return raw
    z = zlib.compressobj(9, zlib.DEFLATED, -15, 8, zlib.Z_DEFAULT_STRATEGY)
    return b"ADBd" + z.compress(raw) + z.flush()
