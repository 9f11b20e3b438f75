#!/bin/sh
# /lib/functions/procd.sh for the sipalg QEMU test VM ONLY.  It emulates
# OpenWrt's procd for init scripts on a Debian userland that has no procd;
# it is not OpenWrt code and is never installed on a router.
#
# The procd_* functions write what an init script declares (instances with
# their params, triggers) into a staging directory; procd_close_service hands
# it to /usr/libexec/procd-shim, which does what procd does with `ubus call
# service set`: an instance that is unchanged and running is left alone, a
# changed one is restarted, one the script no longer declares is stopped, and
# each instance runs under a small supervisor (respawn, term_timeout,
# stdout/stderr to /var/log/SERVICE.log, read with `logread`).
# Differences from procd: no ubus/jail/netifd; interface triggers are only
# recorded; stopping waits until the process has exited.

PROCD_SHIM="${PROCD_SHIM:-/usr/libexec/procd-shim}"

_procd_quote() {
	local a
	for a in "$@"; do
		printf " '%s'" "$(printf '%s' "$a" | sed "s/'/'\\\\''/g")"
	done
}

procd_open_service() {
	_PROCD_SERVICE="$1"
	_PROCD_INSTANCE_SEQ=0
	_procd_instance=
	_procd_dir="$(mktemp -d /tmp/procd-shim.XXXXXX)"
	printf '%s\n' "$1" > "$_procd_dir/name"
	[ -n "$2" ] && printf '%s\n' "$2" > "$_procd_dir/script"
	: > "$_procd_dir/triggers"
}

procd_close_service() {
	local ret
	[ -n "$_procd_dir" ] || return 1
	if type service_triggers >/dev/null 2>&1; then
		service_triggers
	fi
	"$PROCD_SHIM" set "$_procd_dir"
	ret=$?
	rm -rf "$_procd_dir"
	_procd_dir=
	return $ret
}

procd_open_instance() {
	[ -n "$_procd_dir" ] || return 1
	_PROCD_INSTANCE_SEQ=$((_PROCD_INSTANCE_SEQ + 1))
	_procd_instance="${1:-instance$_PROCD_INSTANCE_SEQ}"
	: > "$_procd_dir/instance.$_procd_instance"
}

procd_set_param() {
	local key="$1"
	[ -n "$_procd_instance" ] || return 0
	shift
	printf 'set %s%s\n' "$key" "$(_procd_quote "$@")" >> "$_procd_dir/instance.$_procd_instance"
}

procd_append_param() {
	local key="$1"
	[ -n "$_procd_instance" ] || return 0
	shift
	printf 'append %s%s\n' "$key" "$(_procd_quote "$@")" >> "$_procd_dir/instance.$_procd_instance"
}

procd_close_instance() {
	_procd_instance=
}

procd_add_reload_trigger() {
	local c
	for c in "$@"; do
		printf 'config %s\n' "$c" >> "$_procd_dir/triggers"
	done
}

procd_add_config_trigger() {
	# procd_add_config_trigger config.change PACKAGE COMMAND...: only the reload form is emulated
	[ "$1" = config.change ] && printf 'config %s\n' "$2" >> "$_procd_dir/triggers"
	return 0
}

procd_add_reload_interface_trigger() {
	printf 'interface %s\n' "$1" >> "$_procd_dir/triggers"
}

procd_add_interface_trigger() {
	printf 'interface %s\n' "$2" >> "$_procd_dir/triggers"
}

procd_open_trigger() { return 0; }
procd_close_trigger() { return 0; }
procd_open_validate() { return 0; }
procd_close_validate() { return 0; }
procd_add_validation() { return 0; }
procd_open_data() { return 0; }
procd_close_data() { return 0; }

procd_kill() {
	"$PROCD_SHIM" kill "$1" ${2:+"$2"}
}

procd_send_signal() {
	"$PROCD_SHIM" signal "$1" "${2:-*}" ${3:+"$3"}
}

procd_running() {
	"$PROCD_SHIM" running "$1" "${2:-*}"
}

procd_known() {
	"$PROCD_SHIM" known "$1"
}
