"""Settings shared by the daemon and its tools.

Kept free of imports: `sipalg status` (run by the LuCI page every 5 s) reads
its defaults from here without loading the engine.
"""

DEFAULT_CONFIG = "/etc/config/sipalg"
DEFAULT_STATE_DIR = "/var/run/sipalg"
