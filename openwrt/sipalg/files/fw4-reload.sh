#!/bin/sh
# fw4 script include (firewall.sipalg): runs after each fw4 start/reload.
# A HUP makes a running sipalg re-install its table if fw4 flushed it.
[ -x /etc/init.d/sipalg ] || exit 0
/etc/init.d/sipalg running 2>/dev/null || exit 0
# shellcheck source=/dev/null # OpenWrt's, not in this tree
. /lib/functions/procd.sh
procd_send_signal sipalg main HUP
exit 0
