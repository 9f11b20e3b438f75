"""The kernel side of the daemon: the ALG's own nftables table and the queue hook."""
