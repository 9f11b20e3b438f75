"""The OpenWrt 25.12 packages as apk-tools 3 reads them: ADB container, info, files, scripts, records.

Builds the .apk files with scripts/mkapk and reads them back with our reader
(scripts/apkread.py), which follows apk-tools 3.0.x's own parsing.  What the
packages must hold is worked out here from the feed Makefiles and the source
files directly, not through the writer's code.  No apk-tools exists on the
build machine; the README records the manual check with a real apk.
"""
import glob
import hashlib
import os
import re
import struct
import subprocess
import sys
import zlib

import pytest

from tests.support import ROOT
from tests.support.ipkbuild import build_all_apk

FEED = os.path.join(ROOT, "openwrt")
sys.path.insert(0, os.path.join(ROOT, "scripts"))
import apkread  # noqa: E402
from feedmakefile import FeedMakefile  # noqa: E402

EPOCH = 1767225600                       # 2026-01-01, well past 2**28: mtimes need an int32 value


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    return build_all_apk(tmp_path_factory.mktemp("dist"), EPOCH)


@pytest.fixture(scope="module")
def pkgs(built):
    return {name: apkread.read(open(path, "rb").read()) for name, path in built.items()}


def _files(pkg):
    """{absolute path: file dict} of a read package."""
    out = {}
    for d in pkg["paths"]:
        for f in d.get("files", []):
            out["/" + os.path.join(d.get("name", ""), f["name"])] = f
    return out


def _sha(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).digest()


def _raw(path):
    raw, _ = apkread.decompress(open(path, "rb").read())
    return raw


def _blocks(raw):
    """(offset, type, raw size) of each block, walked here from the format (u32 type<<30 | size, 8-aligned)."""
    out, pos = [], 8
    while pos < len(raw):
        ts = struct.unpack_from("<I", raw, pos)[0]
        out.append((pos, ts >> 30, ts & 0x3FFFFFFF))
        pos += (ts & 0x3FFFFFFF) + (-(ts & 0x3FFFFFFF) % 8)
    return out


def test_both_packages_built_with_openwrt_25_12_names(built):
    assert sorted(built) == ["luci-app-sipalg", "sipalg"]
    for name, path in built.items():
        m = re.fullmatch(r"%s-(\d+\.\d+\.\d+-r\d+)\.apk" % re.escape(name), os.path.basename(path))
        assert m, path
        assert apkread.version_ok(m.group(1))


def test_container_is_deflated_adb_with_package_schema_and_block_order(built, pkgs):
    for name, path in built.items():
        blob = open(path, "rb").read()
        assert blob[:4] == b"ADBd"                                  # mkpkg's default: raw deflate
        raw = zlib.decompressobj(-15).decompress(blob[4:])
        assert raw[:8] == b"ADB.pckg"
        kinds = [k for _, k, _ in _blocks(raw)]
        assert kinds[0] == 0 and set(kinds[1:]) == {2}            # ADB, then DATA only: no SIG block
        assert all(off % 8 == 0 for off, _, _ in _blocks(raw))
        assert pkgs[name]["signatures"] == 0 and pkgs[name]["compression"] == "deflate"
        assert raw[8 + 4] == 0                                      # ADB compat version


def test_info_fields_come_from_the_feed_makefiles(pkgs):
    for name, feed_dir in (("sipalg", "sipalg"), ("luci-app-sipalg", "luci-app-sipalg")):
        mk = FeedMakefile(os.path.join(FEED, feed_dir, "Makefile"))
        info = pkgs[name]["info"]
        text = open(mk.path).read()
        ver = "%s-r%s" % (re.search(r"^PKG_VERSION:=(\S+)", text, re.M).group(1),
                          re.search(r"^PKG_RELEASE:=(\S+)", text, re.M).group(1))
        assert (info["name"], info["version"], info["arch"]) == (name, ver, "noarch")
        assert info["origin"] == "feeds/sipalg/openwrt/" + feed_dir
        for field, var in (("license", "PKG_LICENSE"), ("maintainer", "PKG_MAINTAINER")):
            if mk.vars.get(var):
                assert info[field] == mk.vars[var]
            else:
                assert field not in info
        url = mk.fields(name).get("URL")
        assert info.get("url") == (url or None)
        assert "\n" not in info["description"] and info["description"]
        assert [d["name"] for d in info["provides"]] == [name + "-any"]
        spec = re.search(r"^\s*(?:LUCI_)?DEPENDS:=(.*)$", text, re.M).group(1).split()
        want = sorted({"libc"} | {d.lstrip("+") for d in spec})
        assert [d["name"] for d in info["depends"]] == want
        assert all("version" not in d for d in info["depends"])
        assert info["installed-size"] == sum(f["size"] for f in _files(pkgs[name]).values())
        assert len(info["hashes"]) == 20


def _recipe_expectations(feed_dir):
    """{installed path: (mode, source file)} from the Makefile's install recipe, read here on its own."""
    text = open(os.path.join(FEED, feed_dir, "Makefile")).read()
    recipe = re.search(r"^define Package/[^/\n]+/install\n(.*?)^endef", text, re.M | re.S).group(1)
    modes = {"INSTALL_BIN": 0o755, "INSTALL_DATA": 0o644, "INSTALL_CONF": 0o600}
    out = {}
    for op, args in re.findall(r"\$\((INSTALL_BIN|INSTALL_DATA|INSTALL_CONF)\)\s+(.*)", recipe):
        *srcs, dest = args.replace("$(PKG_BUILD_DIR)", ROOT).replace("$(1)", "").split()
        for s in srcs:
            for src in sorted(glob.glob(os.path.join(FEED, feed_dir, s))):
                out[os.path.join(dest, os.path.basename(src)) if dest.endswith("/") else dest] = (modes[op], src)
    return out


def test_every_file_of_the_install_recipe_with_its_mode_and_sha256(pkgs):
    files = _files(pkgs["sipalg"])
    want = _recipe_expectations("sipalg")
    assert len(want) > 20 and "/etc/init.d/sipalg" in want and "/usr/lib/sipalg/alg/core/engine.py" in want
    for path, (mode, src) in want.items():
        f = files[path]
        assert f["acl"] == {"mode": mode, "user": "root", "group": "root"}, path
        assert f["hash"] == _sha(src) and f["data"] == open(src, "rb").read(), path
        assert f["mtime"] == EPOCH
    extra = set(files) - set(want)
    assert extra == {"/lib/apk/packages/sipalg." + e for e in ("list", "conffiles", "conffiles_static", "rusers")}
    # USERID as package-pack.mk records it for apk's add_group_and_user
    assert files["/lib/apk/packages/sipalg.rusers"]["data"] == b"sipalg:sipalg\n"
    for d in pkgs["sipalg"]["paths"]:
        assert d["acl"] == {"mode": 0o755, "user": "root", "group": "root"}, d.get("name")


def test_luci_files_follow_luci_mk_layout_and_keep_exec_bits(pkgs):
    files = _files(pkgs["luci-app-sipalg"])
    top = os.path.join(FEED, "luci-app-sipalg")
    want = {}
    for sub, to in (("htdocs", "/www"), ("root", "")):
        for dirpath, _, names in os.walk(os.path.join(top, sub)):
            for n in names:
                src = os.path.join(dirpath, n)
                want[to + "/" + os.path.relpath(src, os.path.join(top, sub))] = src
    assert want and "/usr/libexec/rpcd/luci.sipalg" in want
    for path, src in want.items():
        assert files[path]["hash"] == _sha(src), path
        assert files[path]["acl"]["mode"] == (0o755 if os.access(src, os.X_OK) else 0o644), path
    assert set(files) - set(want) == {"/lib/apk/packages/luci-app-sipalg.list"}


def test_apk_records_list_and_conffiles_as_package_pack_mk_writes_them(pkgs):
    files = _files(pkgs["sipalg"])
    listed = files["/lib/apk/packages/sipalg.list"]["data"].decode().split("\n")
    # written before the tree is listed: the .rusers file is in the list, the records after it aren't
    assert listed[-1] == "" and listed[:-1] == sorted(p for p in files if not p.startswith("/lib/apk/packages/")
                                                      or p.endswith(".rusers"))
    assert files["/lib/apk/packages/sipalg.conffiles"]["data"] == b"/etc/config/sipalg\n"
    conf = os.path.join(FEED, "sipalg", "files", "sipalg.config")
    assert files["/lib/apk/packages/sipalg.conffiles_static"]["data"] == \
        ("/etc/config/sipalg %s\n" % hashlib.sha256(open(conf, "rb").read()).hexdigest()).encode()
    luci = _files(pkgs["luci-app-sipalg"])
    assert luci["/lib/apk/packages/luci-app-sipalg.list"]["data"].decode().split("\n")[:-1] == \
        sorted(p for p in luci if not p.startswith("/lib/apk/"))


def test_scripts_are_openwrt_25_12s_lifecycle_scripts(pkgs, tmp_path):
    for name, pkg in pkgs.items():
        s = {k: v.decode() for k, v in pkg["scripts"].items()}
        assert set(s) == {"post-install", "post-upgrade", "pre-deinstall"}   # no preinst/postrm in the feed
        for kind, text in s.items():
            assert text.startswith("#!/bin/sh\n") and text.count("#!") == 1, kind
            path = tmp_path / ("%s.%s" % (name, kind))
            path.write_text(text)
            r = subprocess.run(["sh", "-n", str(path)], stderr=subprocess.PIPE)
            assert r.returncode == 0, r.stderr.decode()
        post = s["post-install"].split("\n")
        assert post[1] == '[ "${IPKG_NO_SCRIPT}" = "1" ] && exit 0'
        assert post.index('export pkgname="%s"' % name) < post.index("default_postinst")
        assert "add_group_and_user" in post
        assert s["post-upgrade"] == "#!/bin/sh\nexport PKG_UPGRADE=1\n" + s["post-install"].split("\n", 1)[1]
        pre = s["pre-deinstall"].split("\n")
        assert pre.index('export pkgname="%s"' % name) < pre.index("default_prerm")
    # the packages' own scripts follow the defaults, as in the .ipk's -pkg scripts
    mk = open(os.path.join(FEED, "sipalg", "Makefile")).read()
    prerm = re.search(r"^define Package/sipalg/prerm\n#!/bin/sh\n(.*?)^endef", mk, re.M | re.S).group(1)
    pre = pkgs["sipalg"]["scripts"]["pre-deinstall"].decode()
    assert pre.endswith("default_prerm\n" + prerm.replace("$$", "$"))
    post = pkgs["luci-app-sipalg"]["scripts"]["post-install"].decode()
    assert post.index("default_postinst") < post.index("rm -f /tmp/luci-indexcache.*") < post.index("killall -HUP rpcd")


def test_build_is_reproducible_and_times_follow_source_date_epoch(built, tmp_path):
    again = build_all_apk(tmp_path / "a", EPOCH)
    for name, path in built.items():
        assert open(path, "rb").read() == open(again[name], "rb").read(), name
    later = build_all_apk(tmp_path / "b", EPOCH + 86400)
    pkg = apkread.read(open(later["sipalg"], "rb").read())
    assert {f["mtime"] for f in _files(pkg).values()} == {EPOCH + 86400}
    assert open(later["sipalg"], "rb").read() != open(built["sipalg"], "rb").read()


def test_reader_accepts_uncompressed_and_a_signature_block_before_data(built):
    raw = _raw(built["sipalg"])
    assert apkread.read(raw)["compression"] == "none"
    off, kind, size = _blocks(raw)[1]                      # first DATA block
    sig = struct.pack("<I", 1 << 30 | 4 + 18) + bytes(18) + bytes(2)   # a SIG block (not checked: untrusted)
    assert apkread.read(raw[:off] + sig + raw[off:])["signatures"] == 1
    with pytest.raises(apkread.ApkError, match="out of order"):
        apkread.read(raw + sig)                                   # SIG after DATA


def _flip(raw, at):
    b = bytearray(raw)
    b[at] ^= 0x01
    return bytes(b)


def test_reader_rejects_corrupted_packages(built, pkgs):
    raw = _raw(built["sipalg"])
    conf = _files(pkgs["sipalg"])["/etc/config/sipalg"]
    blocks = _blocks(raw)
    adb_end = blocks[1][0]
    cases = {
        "a flipped byte in a file hash": (_flip(raw, raw.index(conf["hash"]) + 7), "DATA does not match"),
        "a flipped byte in file data": (_flip(raw, raw.index(conf["data"], adb_end) + 11), "DATA does not match"),
        "a truncated block": (raw[:-100], "only"),
        "a wrong schema": (raw[:4] + b"indx" + raw[8:], "schema"),
        "no magic": (b"ADB!" + raw[4:], "not an apk v3 package|unknown ADB"),
        "a missing DATA block": (raw[:blocks[-1][0]], "no DATA block"),
        "DATA blocks swapped": (raw[:blocks[1][0]] + raw[blocks[2][0]:blocks[3][0]] + raw[blocks[1][0]:blocks[2][0]]
                                + raw[blocks[3][0]:], "DATA block for path"),
        "an invalid version": (raw.replace(b"\x080.1.0-r1", b"\x080.1.0-x1", 1), "version"),
        "a flipped byte in the package id": (_flip(raw, raw.index(pkgs["sipalg"]["info"]["hashes"])),
                                             "package id"),
        "a DATA block before the ADB block": (raw[:8] + raw[blocks[1][0]:blocks[2][0]] + raw[8:blocks[1][0]]
                                              + raw[blocks[2][0]:], "out of order"),
        "a broken deflate stream": (open(built["sipalg"], "rb").read()[:-50], "deflate"),
        "zstd compression": (b"ADBc\x02\x03" + raw, "zstd"),
    }
    for what, (blob, msg) in cases.items():
        assert blob != raw, what
        with pytest.raises(apkread.ApkError, match=msg):
            apkread.read(blob)
    apkread.read(raw)                                             # and the original still reads


def test_reader_rejects_a_value_of_the_wrong_type(built):
    raw = _raw(built["sipalg"])
    adb_at = 8 + 4
    root = struct.unpack_from("<I", raw, adb_at + 4)[0]
    info = struct.unpack_from("<I", raw, adb_at + (root & 0x0FFFFFFF) + 4)[0]
    name_slot = adb_at + (info & 0x0FFFFFFF) + 4
    bad = bytearray(raw)
    struct.pack_into("<I", bad, name_slot, 0x10000005)           # name as an int
    with pytest.raises(apkread.ApkError, match="where a blob belongs"):
        apkread.read(bytes(bad))


# apk-tools 3.0.5 `apk version -c` on these, run by hand on 2026-12-01: it listed exactly the False ones
VERSIONS = {"0.1.0-r1": True, "1": True, "1.2.3a": True, "1.2_rc1": True, "1.2_rc1_p2": True,
            "2024.10.14~15f05012-r1": True, "5.0.2~6fe92d1a-r4": True, "3.0.0_pre20240416": True,
            "1.2_p": True, "1.2_p_p": True, "1_rc": True, "1a_rc1": True, "01.2": True, "1.2_alpha1_beta2": True,
            "1.2-r01": True, "0": True, "1.2a_pre1~deadbeef-r3": True, "1.2_cvs_svn_git_hg_p": True,
            "1.0-r": False, "1..2": False, "a1": False, "1.2-1": False, "1.2ab": False, "1.2_foo": False,
            "1.2~ABC": False, "1-r1-r2": False, "1.2a.3": False, "1.": False, "1.2-r1~ab": False, "1.2~": False,
            "1.2~ab_rc1": False, "1_rc1a": False, "1a2": False, "1.2.3-r1-r": False, "1.2_pre1.3": False}


def test_version_syntax_as_apk_tools_parses_it():
    assert {v: apkread.version_ok(v) for v in VERSIONS} == VERSIONS


def test_mkapk_refuses_a_version_apk_would_refuse(tmp_path):
    import shutil
    feed = tmp_path / "repo"
    shutil.copytree(os.path.join(ROOT, "scripts"), feed / "scripts")
    shutil.copytree(os.path.join(ROOT, "openwrt", "sipalg"), feed / "openwrt" / "sipalg")
    shutil.copytree(os.path.join(ROOT, "alg"), feed / "alg", ignore=shutil.ignore_patterns("__pycache__"))
    mk = feed / "openwrt" / "sipalg" / "Makefile"
    mk.write_text(mk.read_text().replace("PKG_VERSION:=", "PKG_VERSION:=v"))
    r = subprocess.run([sys.executable, str(feed / "scripts" / "mkapk"), "-o", str(tmp_path / "out")],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=dict(os.environ, SOURCE_DATE_EPOCH="1"))
    assert r.returncode == 1 and "not an apk version" in r.stderr.decode()
    assert not os.path.exists(tmp_path / "out" / "sipalg-v0.1.0-r1.apk")


def test_scripts_enable_and_disable_the_service_in_a_throwaway_root(pkgs, tmp_path):
    """The .apk's own scripts against the QEMU VM's stand-ins for /lib/functions.sh and /etc/rc.common,
    offline (IPKG_INSTROOT set, as for an image), with the files unpacked from the package as apk would."""
    import shutil
    root = tmp_path / "root"
    overlay = os.path.join(ROOT, "qemu", "guest", "overlay")
    for rel in ("etc/rc.common", "lib/functions.sh", "lib/functions/procd.sh"):
        os.makedirs(os.path.dirname(root / rel), exist_ok=True)
        shutil.copy2(os.path.join(overlay, rel), root / rel)
    for path, f in _files(pkgs["sipalg"]).items():
        dest = root / path.lstrip("/")
        os.makedirs(dest.parent, exist_ok=True)
        dest.write_bytes(f["data"])
        os.chmod(dest, f["acl"]["mode"])
    env = dict(os.environ, IPKG_INSTROOT=str(root))
    env.pop("pkgname", None)

    def run(kind):
        script = tmp_path / kind
        script.write_bytes(pkgs["sipalg"]["scripts"][kind])
        r = subprocess.run(["sh", str(script), pkgs["sipalg"]["info"]["version"]], env=env, cwd=str(root),
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        assert r.returncode == 0, r.stdout.decode()
        return r.stdout.decode()
    run("post-install")
    assert os.readlink(root / "etc/rc.d/S95sipalg") == "../init.d/sipalg"
    assert os.readlink(root / "etc/rc.d/K10sipalg") == "../init.d/sipalg"
    run("post-upgrade")
    assert os.path.islink(root / "etc/rc.d/S95sipalg")
    # an image's first boot compiles the bytecode (91-sipalg-bytecode); pre-deinstall takes it back
    r = subprocess.run(["sh", str(root / "etc/uci-defaults/91-sipalg-bytecode")], env=env,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert r.returncode == 0, r.stdout.decode()
    caches = [d for d, _, _ in os.walk(root / "usr/lib/sipalg") if d.endswith("__pycache__")]
    assert len(caches) == 3
    run("pre-deinstall")
    assert os.listdir(root / "etc/rc.d") == []
    assert not [d for d, _, _ in os.walk(root / "usr/lib/sipalg") if d.endswith("__pycache__")]
