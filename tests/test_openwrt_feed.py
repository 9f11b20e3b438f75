"""The feed as an OpenWrt SDK builds it: both Makefiles in an SDK-shaped tree.

The tree is what `scripts/feeds update` and `scripts/feeds install` leave in an SDK for a
`src-link` feed (feeds/sipalg -> this repository, package/feeds/sipalg/<pkg> -> the package
directories) and for a `src-git` one (a clone), with stand-ins for rules.mk,
include/package.mk and feeds/luci/luci.mk written here: they define what the real ones
define for a package Makefile (variables, INSTALL_* and CP, Package/Default, Build/Prepare
with its Post hooks, BuildPackage's field checks, luci.mk's package and install recipe)
and, for each package, run Build/Prepare and Package/<name>/install into a staging
directory the way the SDK does before packing.  GNU make then resolves every include
and every install source for real; the staged trees must be the ones `make ipk` packs.
"""
import gzip
import io
import os
import re
import shutil
import subprocess
import tarfile

import pytest

from tests.support import ROOT
from tests.support.ipkbuild import build_all
from tests.support.need import need

FEED = os.path.join(ROOT, "openwrt")

PACKAGES = {"sipalg": "sipalg", "luci-app-sipalg": "luci-app-sipalg"}     # directory: package name
FIELDS = ("SECTION", "CATEGORY", "SUBMENU", "TITLE", "VERSION", "URL", "MAINTAINER", "LICENSE",
          "LICENSE_FILES", "SOURCE", "PKGARCH", "DEPENDS")

RULES_MK = r"""# rules.mk: what a package Makefile takes from it
INCLUDE_DIR:=$(TOPDIR)/include
SCRIPT_DIR:=$(TOPDIR)/scripts
BUILD_DIR:=$(TOPDIR)/build_dir/target-standin
BOARD:=standin
empty:=
space:=$(empty) $(empty)
comma:=,
define sep

endef
CP:=cp -fpR
LN:=ln -sf
FIND:=find
XARGS:=xargs -r
INSTALL_BIN:=install -m0755
INSTALL_SUID:=install -m4755
INSTALL_DIR:=install -d -m0755
INSTALL_DATA:=install -m0644
INSTALL_CONF:=install -m0600
"""

PACKAGE_MK = r"""# include/package.mk, as far as a package Makefile sees it; instead of packing, each
# package's install recipe fills $(STAGE)/<name> and its control fields are printed
PKG_BUILD_DIR ?= $(BUILD_DIR)/$(PKG_NAME)$(if $(PKG_VERSION),-$(PKG_VERSION))
PKG_INSTALL_DIR ?= $(PKG_BUILD_DIR)/ipkg-install

define Package/Default
  SECTION:=opt
  CATEGORY:=Extra packages
  SUBMENU:=
  TITLE:=
  URL:=
  DEPENDS:=
  PKGARCH:=$(BOARD)
  MAINTAINER:=$(PKG_MAINTAINER)
  SOURCE:=$(patsubst $(TOPDIR)/%,%,$(CURDIR))
  VERSION:=$(PKG_VERSION)$(if $(PKG_RELEASE),-r$(PKG_RELEASE))
  LICENSE:=$(PKG_LICENSE)
  LICENSE_FILES:=$(PKG_LICENSE_FILES)
endef

define Build/Prepare/Default
	[ ! -d ./src/ ] || $(CP) ./src/. $(PKG_BUILD_DIR)
endef

define Build/Compile/Default
	$(MAKE) -C $(PKG_BUILD_DIR)
endef

Build/Prepare=$(call Build/Prepare/Default,)
Build/Compile=$(call Build/Compile/Default,)

define StandIn/Core
$(PKG_BUILD_DIR)/.prepared:
	rm -rf $(PKG_BUILD_DIR)
	mkdir -p $(PKG_BUILD_DIR)
	$(Build/Prepare)
	$(foreach hook,$(Hooks/Prepare/Post),$(call $(hook))$(sep))
	touch $$@

$(PKG_BUILD_DIR)/.built: $(PKG_BUILD_DIR)/.prepared
	$(Build/Compile)
	touch $$@
endef

define StandIn/Package
package-install-$(1): $(PKG_BUILD_DIR)/.built
	rm -rf $(STAGE)/$(1)
	mkdir -p $(STAGE)/$(1)
	$(call Package/$(1)/install,$(STAGE)/$(1))
endef

define BuildPackage
  $(eval $(Package/Default))
  $(eval $(Package/$(1)))
  $(foreach f,TITLE CATEGORY SECTION VERSION,$(if $(strip $($(f))),,$(error Package/$(1) is missing the $(f) field)))
  $(if $(Package/$(1)/install),,$(error Package/$(1) has no install recipe))
  $(foreach f,@FIELDS@,$(info FIELD $(1) $(f)=$(strip $($(f)))))
  $(info FIELD $(1) PKG_BUILD_DIR=$(PKG_BUILD_DIR))
  $(info FIELD $(1) PKG_FILE_DEPENDS=$(strip $(PKG_FILE_DEPENDS)))
  $(if $(STANDIN_CORE),,$(eval $(StandIn/Core))$(eval STANDIN_CORE:=1))
  $(eval $(call StandIn/Package,$(1)))
endef
"""

LUCI_MK = r"""# feeds/luci/luci.mk: a LuCI app's package from LUCI_* variables, htdocs/ to /www and
# root/ to / (modes kept), one luci-i18n-<name>-<lang> package per po/<lang>/
LUCI_NAME?=$(notdir ${CURDIR})
LUCI_TYPE?=$(word 2,$(subst -, ,$(LUCI_NAME)))
LUCI_BASENAME?=$(patsubst luci-$(LUCI_TYPE)-%,%,$(LUCI_NAME))
LUCI_LANGUAGES:=$(sort $(filter-out templates,$(notdir $(wildcard ${CURDIR}/po/*))))
LUCI_PKGARCH?=$(if $(realpath src/Makefile),,all)
LUCI_URL?=https://github.com/openwrt/luci
LUCI_MAINTAINER?=OpenWrt LuCI community
LUCI_MENU.col=1. Collections
LUCI_MENU.mod=2. Modules
LUCI_MENU.app=3. Applications
LUCI_MENU.theme=4. Themes
LUCI_MENU.proto=5. Protocols
LUCI_MENU.lib=6. Libraries
HTDOCS = /www

PKG_NAME?=$(LUCI_NAME)
PKG_RELEASE?=1
PKG_BUILD_DIR:=$(BUILD_DIR)/$(PKG_NAME)

include $(INCLUDE_DIR)/package.mk

define Package/$(PKG_NAME)
  SECTION:=luci
  CATEGORY:=LuCI
  SUBMENU:=$(if $(LUCI_MENU.$(LUCI_TYPE)),$(LUCI_MENU.$(LUCI_TYPE)),$(LUCI_MENU.app))
  TITLE:=$(if $(LUCI_TITLE),$(LUCI_TITLE),LuCI $(LUCI_NAME) $(LUCI_TYPE))
  DEPENDS:=$(LUCI_DEPENDS)
  VERSION:=$(if $(PKG_VERSION),$(PKG_VERSION)-r$(PKG_RELEASE),$(PKG_SRC_VERSION))
  PKGARCH:=$(LUCI_PKGARCH)
  URL:=$(LUCI_URL)
  MAINTAINER:=$(LUCI_MAINTAINER)
endef

define Build/Prepare
	for d in luasrc htdocs root src; do \
	  if [ -d ./$$$$d ]; then \
	    mkdir -p $(PKG_BUILD_DIR)/$$$$d; \
	    $(CP) ./$$$$d/* $(PKG_BUILD_DIR)/$$$$d/; \
	  fi; \
	done
	$(call Build/Prepare/Default)
endef

define Build/Compile
endef

define Package/$(PKG_NAME)/install
	if [ -d $(PKG_BUILD_DIR)/htdocs ]; then \
	  $(INSTALL_DIR) $(1)$(HTDOCS); \
	  cp -pR $(PKG_BUILD_DIR)/htdocs/* $(1)$(HTDOCS)/; \
	else true; fi
	if [ -d $(PKG_BUILD_DIR)/root ]; then \
	  $(INSTALL_DIR) $(1)/; \
	  cp -pR $(PKG_BUILD_DIR)/root/* $(1)/; \
	else true; fi
endef

LUCI_BUILD_PACKAGES := $(PKG_NAME)

define LuciTranslation
  define Package/luci-i18n-$(LUCI_BASENAME)-$(1)
    SECTION:=luci
    CATEGORY:=LuCI
    TITLE:=$(PKG_NAME) - $(1) translation
    VERSION:=$(PKG_VERSION)
    DEPENDS:=$(PKG_NAME)
    PKGARCH:=all
  endef
  define Package/luci-i18n-$(LUCI_BASENAME)-$(1)/install
	$$(INSTALL_DIR) $$(1)/usr/lib/lua/luci/i18n
	$(foreach po,$(wildcard ${CURDIR}/po/$(1)/*.po),$$(INSTALL_DATA) $(po) $$(1)/usr/lib/lua/luci/i18n/$(basename $(notdir $(po))).$(1).po;)
  endef
  LUCI_BUILD_PACKAGES += luci-i18n-$(LUCI_BASENAME)-$(1)
endef

$(foreach lang,$(LUCI_LANGUAGES),$(eval $(call LuciTranslation,$(lang))))
$(foreach pkg,$(LUCI_BUILD_PACKAGES),$(eval $(call BuildPackage,$(pkg))))
"""

# scripts/feeds scans a feed for Makefiles this deep that carry this signature (include/scan.mk)
SCAN_DEPTH = 5
SCAN_SIGNATURE = re.compile(r"call (Build/DefaultTargets|BuildPackage|KernelPackage)")


def sdk_tree(top, feed_kind):
    """An SDK top directory with the stand-ins and this repository added as feed `sipalg`."""
    os.makedirs(os.path.join(top, "include"))
    os.makedirs(os.path.join(top, "feeds", "luci"))
    with open(os.path.join(top, "rules.mk"), "w") as f:
        f.write(RULES_MK)
    with open(os.path.join(top, "include", "package.mk"), "w") as f:
        f.write(PACKAGE_MK.replace("@FIELDS@", " ".join(FIELDS)))
    with open(os.path.join(top, "feeds", "luci", "luci.mk"), "w") as f:
        f.write(LUCI_MK)
    feed = os.path.join(top, "feeds", "sipalg")
    if feed_kind == "src-link":
        line = "src-link sipalg %s" % ROOT
        os.symlink(ROOT, feed)                                  # scripts/feeds update: ln -s
    else:
        # the files a clone has: the committed tree, with any changes to tracked files on top
        line = "src-git sipalg file://%s" % ROOT
        rev = subprocess.run(["git", "-C", ROOT, "stash", "create"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        rev = (rev.returncode == 0 and rev.stdout.decode().strip()) or "HEAD"
        os.makedirs(feed)
        archive = subprocess.run(["git", "-C", ROOT, "archive", "--format=tar", rev], stdout=subprocess.PIPE,
                                 check=True).stdout
        tarfile.open(fileobj=io.BytesIO(archive)).extractall(feed)
    with open(os.path.join(top, "feeds.conf"), "w") as f:
        f.write("src-git luci https://github.com/openwrt/luci.git\n%s\n" % line)
    # scripts/feeds install: package/feeds/<feed>/<dir> -> ../../../<path of the Makefile's directory>
    os.makedirs(os.path.join(top, "package", "feeds", "sipalg"))
    for d in PACKAGES:
        os.symlink("../../../feeds/sipalg/openwrt/" + d, os.path.join(top, "package", "feeds", "sipalg", d))
    return top


def sdk_build(top, pkgdir, stage):
    """make package-install-<name> in the package's directory, as the SDK enters it."""
    need(shutil.which("make") is not None, "needs GNU make")
    name = PACKAGES[pkgdir]
    r = subprocess.run(["sh", "-c", 'umask 022; exec make -s -C "$0" TOPDIR="$1" STAGE="$2" "$3"',
                        os.path.join(top, "package", "feeds", "sipalg", pkgdir), top, stage, "package-install-" + name],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=120)
    assert r.returncode == 0, "%s: make failed:\n%s%s" % (pkgdir, r.stdout.decode(), r.stderr.decode())
    fields = {}
    for line in r.stdout.decode().splitlines():
        m = re.match(r"FIELD (\S+) ([A-Z_]+)=(.*)$", line)
        if m:
            fields.setdefault(m.group(1), {})[m.group(2)] = m.group(3)
    assert name in fields, r.stdout.decode()
    return fields, os.path.join(stage, name)


def tree(top):
    """{path: (kind, mode, bytes)} under top, '.' for top itself."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(top):
        for n in dirnames + filenames:
            p = os.path.join(dirpath, n)
            st = os.lstat(p)
            data = open(p, "rb").read() if os.path.isfile(p) else None
            out[os.path.relpath(p, top)] = ("f" if data is not None else "d", st.st_mode & 0o7777, data)
    return out


def ipk_tree(ipk, dest):
    with gzip.open(ipk) as f:
        outer = tarfile.open(fileobj=io.BytesIO(f.read()))
    data = tarfile.open(fileobj=io.BytesIO(outer.extractfile("./data.tar.gz").read()))
    control = tarfile.open(fileobj=io.BytesIO(outer.extractfile("./control.tar.gz").read()))
    data.extractall(dest)
    fields = {}
    for line in control.extractfile("./control").read().decode().split("\n"):
        if ":" in line and not line.startswith(" "):
            k, _, v = line.partition(":")
            fields[k] = v.strip()
    return fields


@pytest.fixture(scope="module")
def ipks(tmp_path_factory):
    return build_all(tmp_path_factory.mktemp("dist"))


@pytest.fixture(scope="module")
def linked(tmp_path_factory):
    """Both packages built in an SDK tree with the feed added by src-link: {dir: (fields, staged tree)}."""
    top = sdk_tree(str(tmp_path_factory.mktemp("sdk")), "src-link")
    stage = os.path.join(top, "staging")
    return top, {d: sdk_build(top, d, stage) for d in PACKAGES}


def test_feed_scan_finds_exactly_the_two_packages(linked):
    top, _ = linked
    feed = os.path.join(top, "feeds", "sipalg")
    r = subprocess.run(["find", "-L", feed, "-mindepth", "1", "-maxdepth", str(SCAN_DEPTH), "-name", "Makefile",
                        "-not", "-path", "*/node_modules/*"],
                       stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    found = []
    for mk in r.stdout.decode().split():
        with open(mk, errors="replace") as f:
            if SCAN_SIGNATURE.search(f.read()):
                found.append(os.path.relpath(os.path.dirname(mk), feed))
    assert sorted(found) == sorted("openwrt/" + d for d in PACKAGES)


@pytest.mark.parametrize("pkgdir", sorted(PACKAGES))
def test_sdk_stages_what_make_ipk_packs(linked, ipks, pkgdir, tmp_path):
    """Every include resolves, every install source exists, and the staged tree is, path for
    path, mode for mode and byte for byte, the data of the .ipk scripts/mkipk writes."""
    top, built = linked
    fields, staged = built[pkgdir]
    name = PACKAGES[pkgdir]
    ipk_fields = ipk_tree(ipks[name], str(tmp_path / "ipk"))
    got, want = tree(staged), tree(str(tmp_path / "ipk"))
    assert sorted(got) == sorted(want)
    for p in want:
        assert got[p] == want[p], "%s differs: %s" % (p, (got[p][:2], want[p][:2]))
    # the control fields mkipk writes are those the SDK's package would carry
    f = fields[name]
    assert ipk_fields["Package"] == name and ipk_fields["Version"] == f["VERSION"]
    assert ipk_fields["Section"] == f["SECTION"] and ipk_fields["Architecture"] == f["PKGARCH"] == "all"
    assert ipk_fields["Maintainer"] == f["MAINTAINER"] and ipk_fields["URL"] == f["URL"]
    assert ipk_fields["License"] == f["LICENSE"] and ipk_fields["LicenseFiles"] == f["LICENSE_FILES"]
    deps = [d.lstrip("+") for d in f["DEPENDS"].split()]
    assert [d.strip() for d in ipk_fields["Depends"].split(",")] == deps


@pytest.mark.parametrize("pkgdir", sorted(PACKAGES))
def test_feed_fields_are_real(linked, pkgdir):
    _, built = linked
    fields, _ = built[pkgdir]
    f = fields[PACKAGES[pkgdir]]
    assert f["SUBMENU"], "no SUBMENU"
    assert f["SUBMENU"] == ("Telephony" if pkgdir == "sipalg" else "3. Applications")
    assert re.fullmatch(r"[^<>]+ <[^<>@\s]+@[^<>@\s]+>", f["MAINTAINER"]), f["MAINTAINER"]
    for k in ("MAINTAINER", "URL"):               # no placeholder, and not luci.mk's defaults naming LuCI
        for wrong in ("example.org", "LuCI community", "github.com/openwrt"):
            assert wrong not in f[k], (k, f[k])
    assert f["LICENSE"] == "GPL-2.0-only"
    # the licence files are in the prepared source, as PKG_LICENSE_FILES says
    for lic in f["LICENSE_FILES"].split():
        assert os.path.isfile(os.path.join(f["PKG_BUILD_DIR"], lic)), lic
    assert open(os.path.join(ROOT, "LICENSE")).read().startswith(
        "                    GNU GENERAL PUBLIC LICENSE\n                       Version 2, June 1991\n")
    # everything a rebuild is made to depend on exists
    for p in f["PKG_FILE_DEPENDS"].split():
        assert os.path.exists(p), p
    # make enters the package through the feed's symlinks and sees the real directory (CURDIR)
    assert f["SOURCE"] == os.path.join(FEED, pkgdir)


def test_luci_app_uses_the_luci_feeds_luci_mk():
    text = open(os.path.join(FEED, "luci-app-sipalg", "Makefile")).read()
    assert re.search(r"^include \$\(TOPDIR\)/feeds/luci/luci\.mk$", text, re.M)
    assert "../../luci.mk" not in text


def test_src_git_clone_builds_the_same_files(linked, tmp_path):
    """What a src-git user gets (git's tree: nothing untracked, no node_modules) builds the
    same file list, and its Source is the feed path mkipk writes."""
    need(shutil.which("git") is not None and os.path.exists(os.path.join(ROOT, ".git")), "needs git and a checkout")
    _, built = linked
    top = sdk_tree(str(tmp_path / "sdk"), "src-git")
    for d in PACKAGES:
        fields, staged = sdk_build(top, d, str(tmp_path / "stage"))
        assert sorted(tree(staged)) == sorted(tree(built[d][1])), d
        assert fields[PACKAGES[d]]["SOURCE"] == "feeds/sipalg/openwrt/" + d


def test_source_field_matches_src_git_layout(ipks, tmp_path):
    for d, name in PACKAGES.items():
        assert ipk_tree(ipks[name], str(tmp_path / name))["Source"] == "feeds/sipalg/openwrt/" + d


def test_a_feed_without_the_sources_says_how_to_add_it(tmp_path):
    """src-cpy of openwrt/ alone (no alg/ beside it): Build/Prepare stops with the reason."""
    top = str(tmp_path / "sdk")
    sdk_tree(top, "src-link")
    os.unlink(os.path.join(top, "feeds", "sipalg"))
    os.makedirs(os.path.join(top, "feeds", "sipalg"))
    shutil.copytree(FEED, os.path.join(top, "feeds", "sipalg", "openwrt"), symlinks=True)
    r = subprocess.run(["make", "-s", "-C", os.path.join(top, "package", "feeds", "sipalg", "sipalg"), "TOPDIR=" + top,
                        "STAGE=" + str(tmp_path / "stage"), "package-install-sipalg"],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
    assert r.returncode != 0
    assert "add the repository root as the feed (src-link or src-git, see README.md)" in r.stderr.decode()
