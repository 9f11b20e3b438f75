#!/bin/sh
# fw4 script include (firewall.sipalg): runs after each fw4 start/reload.
# A HUP makes a running sipalg re-install its table if fw4 flushed it.  Not while
# sipalg is being disabled: the init script's reload with enabled '0' puts fw4's
# helper settings back and reloads fw4 before procd stops the daemon, which must
# not take the helper out again on that HUP.
[ -x /etc/init.d/sipalg ] || exit 0
[ "$(uci -q get sipalg.main.enabled)" = 1 ] || exit 0
/etc/init.d/sipalg running 2>/dev/null || exit 0
# shellcheck source=/dev/null # OpenWrt's, not in this tree
. /lib/functions/procd.sh
procd_send_signal sipalg main HUP
exit 0
