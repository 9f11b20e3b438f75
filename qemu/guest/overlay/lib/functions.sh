#!/bin/sh
# /lib/functions.sh for the sipalg QEMU test VM ONLY: an emulation of the
# parts of OpenWrt's /lib/functions.sh that init scripts and opkg's
# maintainer scripts use, on a Debian userland that has none.  Not OpenWrt
# code; never installed on a router.
#
# config_load NAME reads /etc/config/NAME the way OpenWrt does: the output of
# `uci -n export NAME` (the VM's uci, /sbin/uci) is evaluated by the shell,
# its `config`/`option`/`list` lines call the functions below, which keep
# every value in CONFIG_<section>_<option> variables.

NEWLINE="
"

append() {
	local var="$1" value="$2" sep="${3:- }"
	eval "export -- \"$var=\${$var:+\${$var}\${value:+\$sep}}\$value\""
}

list_contains() {
	local var="$1" str="$2" val
	eval "val=\" \${$var} \""
	[ "${val%% $str *}" != "$val" ]
}

config_cb() { return 0; }
option_cb() { return 0; }
list_cb() { return 0; }
reset_cb() {
	config_cb() { return 0; }
	option_cb() { return 0; }
	list_cb() { return 0; }
}

package() { return 0; }

config() {
	local cfgtype="$1" name="$2"
	export CONFIG_NUM_SECTIONS=$((CONFIG_NUM_SECTIONS + 1))
	name="${name:-cfg$CONFIG_NUM_SECTIONS}"
	append CONFIG_SECTIONS "$name"
	export CONFIG_SECTION="$name"
	config_set "$name" TYPE "$cfgtype"
	[ -n "$NO_CALLBACK" ] || config_cb "$cfgtype" "$name"
}

option() {
	local varname="$1"; shift
	config_set "$CONFIG_SECTION" "$varname" "$*"
	[ -n "$NO_CALLBACK" ] || option_cb "$varname" "$*"
}

list() {
	local varname="$1" len; shift
	config_get len "$CONFIG_SECTION" "${varname}_LENGTH" 0
	[ "$len" = 0 ] && append CONFIG_LIST_STATE "${CONFIG_SECTION}_${varname}"
	len=$((len + 1))
	config_set "$CONFIG_SECTION" "${varname}_ITEM$len" "$*"
	config_set "$CONFIG_SECTION" "${varname}_LENGTH" "$len"
	append "CONFIG_${CONFIG_SECTION}_${varname}" "$*" "$LIST_SEP"
	[ -n "$NO_CALLBACK" ] || list_cb "$varname" "$*"
}

config_load() {
	[ -n "$IPKG_INSTROOT" ] && return 0
	local data ret var
	for var in $CONFIG_LIST_STATE; do
		export "CONFIG_${var}=" "CONFIG_${var}_LENGTH="
	done
	export CONFIG_LIST_STATE= CONFIG_SECTIONS= CONFIG_NUM_SECTIONS=0 CONFIG_SECTION=
	data="$(/sbin/uci ${UCI_CONFIG_DIR:+-c "$UCI_CONFIG_DIR"} -n export "$1" 2>/dev/null)"
	ret=$?
	[ "$ret" != 0 ] || [ -z "$data" ] || eval "$data"
	return $ret
}

config_set() {
	export "CONFIG_${1}_${2}=${3}"
}

# config_get VAR SECTION OPTION [DEFAULT]  or  config_get SECTION OPTION (prints)
config_get() {
	case "$2${3:-$1}" in
		*[!A-Za-z0-9_]*) return 1 ;;
	esac
	case "$3" in
		"") eval echo "\"\${CONFIG_${1}_${2}}\"" ;;
		*) eval "export -- \"${1}=\${CONFIG_${2}_${3}:-\${4}}\"" ;;
	esac
}

get_bool() {
	case "$1" in
		1|on|true|yes|enabled) printf 1 ;;
		0|off|false|no|disabled) printf 0 ;;
		*) printf '%s' "$2" ;;
	esac
}

config_get_bool() {
	local _tmp
	config_get _tmp "$2" "$3" "$4"
	export "$1=$(get_bool "$_tmp" "$4")"
}

config_foreach() {
	local function="$1" type="$2" section cfgtype
	[ $# -ge 2 ] && shift 2 || shift $#
	for section in $CONFIG_SECTIONS; do
		config_get cfgtype "$section" TYPE
		[ -n "$type" ] && [ "$type" != "$cfgtype" ] && continue
		eval "$function \"\$section\" \"\$@\""
	done
}

config_list_foreach() {
	local section="$1" option="$2" function="$3" len i val
	[ $# -ge 3 ] && shift 3 || shift $#
	config_get len "$section" "${option}_LENGTH" 0
	[ "$len" = 0 ] && return 0
	i=1
	while [ "$i" -le "$len" ]; do
		config_get val "$section" "${option}_ITEM$i"
		eval "$function \"\$val\" \"\$@\""
		i=$((i + 1))
	done
}

# The maintainer scripts' helpers (default_postinst/default_prerm), following
# OpenWrt's include/package-pack.mk: the package's own script (-pkg) first,
# then its init scripts are enabled (and, on a live system, uci-defaults run
# and the service started).  opkg's scripts pass their own path ($1); apk's
# (OpenWrt 25.12) export pkgname and root and list the files in
# /lib/apk/packages/NAME.list, their own script follows inline.
_pkg_filelist() {
	if [ -f "$IPKG_INSTROOT/lib/apk/packages/$1.list" ]; then
		echo "/lib/apk/packages/$1.list"
	else
		echo "/usr/lib/opkg/info/$1.list"
	fi
}

# Require-User (USERID in the package Makefile) as OpenWrt's functions.sh reads it:
# "user[=uid]:group[=gid]" tuples; a missing id is the first free one from 32768.
group_exists() { grep -qs "^${1}:" "${IPKG_INSTROOT}/etc/group"; }
user_exists() { grep -qs "^${1}:" "${IPKG_INSTROOT}/etc/passwd"; }

group_add() {
	[ -f "${IPKG_INSTROOT}/etc/group" ] || return 1
	echo "${1}:x:${2}:" >> "${IPKG_INSTROOT}/etc/group"
}

group_add_next() {
	local gid gids
	gid=$(grep -s "^${1}:" "${IPKG_INSTROOT}/etc/group" | cut -d: -f3)
	if [ -n "$gid" ]; then
		echo "$gid"
		return
	fi
	gids=$(cut -d: -f3 "${IPKG_INSTROOT}/etc/group" 2>/dev/null)
	gid=32768
	while echo "$gids" | grep -q "^$gid$"; do
		gid=$((gid + 1))
	done
	group_add "$1" "$gid"
	echo "$gid"
}

user_add() {
	local name="$1" uid="$2" gid="$3" uids
	[ -f "${IPKG_INSTROOT}/etc/passwd" ] || return 1
	if [ -z "$uid" ]; then
		uids=$(cut -d: -f3 "${IPKG_INSTROOT}/etc/passwd")
		uid=32768
		while echo "$uids" | grep -q "^$uid$"; do
			uid=$((uid + 1))
		done
	fi
	[ -z "$gid" ] && gid=$uid
	echo "${name}:x:${uid}:${gid}:${name}:/var/run/${name}:/bin/false" >> "${IPKG_INSTROOT}/etc/passwd"
	[ -f "${IPKG_INSTROOT}/etc/shadow" ] && echo "${name}:*:0:0:99999:7:::" >> "${IPKG_INSTROOT}/etc/shadow"
	return 0
}

add_group_and_user() {
	local rusers tuple uid gid uname gname oIFS="$IFS"
	rusers="$(sed -ne 's/^Require-User: *//p' "${IPKG_INSTROOT}/usr/lib/opkg/info/${pkgname}.control" 2>/dev/null)"
	[ -f "${IPKG_INSTROOT}/lib/apk/packages/${pkgname}.rusers" ] && \
		rusers="$(cat "${IPKG_INSTROOT}/lib/apk/packages/${pkgname}.rusers")"
	for tuple in $rusers; do
		IFS=":"
		# shellcheck disable=SC2086
		set -- $tuple; uname="$1"; gname="$2"
		IFS="="
		# shellcheck disable=SC2086
		set -- $uname; uname="$1"; uid="$2"
		# shellcheck disable=SC2086
		set -- $gname; gname="$1"; gid="$2"
		IFS="$oIFS"
		if [ -n "$gname" ] && [ -n "$gid" ]; then
			group_exists "$gname" || group_add "$gname" "$gid"
		elif [ -n "$gname" ]; then
			gid="$(group_add_next "$gname")"
		fi
		[ -n "$uname" ] && { user_exists "$uname" || user_add "$uname" "$uid" "$gid"; }
	done
	return 0
}

default_postinst() {
	local root="$IPKG_INSTROOT" name ret=0 i
	name="${pkgname:-$(basename "${1%.*}")}"
	local filelist
	filelist="$(_pkg_filelist "$name")"
	local pkgname="$name"
	[ -e "$root/usr/lib/opkg/info/${pkgname}.list" ] && add_group_and_user
	if [ -e "$root/usr/lib/opkg/info/${pkgname}.postinst-pkg" ]; then
		( . "$root/usr/lib/opkg/info/${pkgname}.postinst-pkg" )
		ret=$?
	fi
	if [ -z "$root" ] && grep -m1 -q -s "^/etc/uci-defaults/" "$filelist"; then
		( cd /etc/uci-defaults && for i in $(grep -s "^/etc/uci-defaults/" "$filelist"); do
			[ -f "$i" ] && ( . "$i" ) && rm -f "$i"
		done )
	fi
	for i in $(grep -s "^/etc/init.d/" "$root$filelist"); do
		if [ -n "$root" ]; then
			sh "$root/etc/rc.common" "$root$i" enable
		else
			[ "$PKG_UPGRADE" = 1 ] || "$i" enable
			"$i" start
		fi
	done
	return $ret
}

default_prerm() {
	local root="$IPKG_INSTROOT" name ret=0 i
	name="${pkgname:-$(basename "${1%.*}")}"
	local pkgname="$name"
	if [ -f "$root/usr/lib/opkg/info/${pkgname}.prerm-pkg" ]; then
		( . "$root/usr/lib/opkg/info/${pkgname}.prerm-pkg" )
		ret=$?
	fi
	for i in $(grep -s "^/etc/init.d/" "$root$(_pkg_filelist "$pkgname")"); do
		if [ -n "$root" ]; then
			sh "$root/etc/rc.common" "$root$i" disable
		else
			[ "$PKG_UPGRADE" = 1 ] || "$i" disable
			"$i" stop
		fi
	done
	return $ret
}
