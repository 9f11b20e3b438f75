#!/bin/sh
# Test stand-in for OpenWrt base-files' /lib/functions.sh: only the package
# hooks, written from their documented behaviour (include/package-pack.mk,
# base-files), so .ipk maintainer scripts can be run against a throwaway root.
# Not OpenWrt's code; on a router the real file is used.

default_postinst() {
	local root="${IPKG_INSTROOT}"
	local pkgname
	pkgname="$(basename "${1%.*}")"
	local filelist="/usr/lib/opkg/info/${pkgname}.list"
	local ret=0 i

	if [ -f "$root/usr/lib/opkg/info/${pkgname}.postinst-pkg" ]; then
		( . "$root/usr/lib/opkg/info/${pkgname}.postinst-pkg" )
		ret=$?
	fi

	if [ -z "$root" ]; then
		# live system: uci-defaults run now and are deleted on success
		for i in $(grep -s "^/etc/uci-defaults/" "$filelist"); do
			( [ -f "$i" ] && cd "$(dirname "$i")" && . "$i" ) && rm -f "$i"
		done
	fi

	for i in $(grep -s "^/etc/init.d/" "$root$filelist"); do
		if [ -n "$root" ]; then
			sh "$root/etc/rc.common" "$root$i" enable
		else
			[ "$PKG_UPGRADE" = "1" ] || "$i" enable
			"$i" start
		fi
	done
	return $ret
}

default_prerm() {
	local root="${IPKG_INSTROOT}"
	local pkgname
	pkgname="$(basename "${1%.*}")"
	local ret=0 i

	if [ -f "$root/usr/lib/opkg/info/${pkgname}.prerm-pkg" ]; then
		( . "$root/usr/lib/opkg/info/${pkgname}.prerm-pkg" )
		ret=$?
	fi

	for i in $(grep -s "^/etc/init.d/" "$root/usr/lib/opkg/info/${pkgname}.list"); do
		if [ -n "$root" ]; then
			sh "$root/etc/rc.common" "$root$i" disable
		else
			[ "$PKG_UPGRADE" = "1" ] || "$i" disable
			"$i" stop
		fi
	done
	return $ret
}
