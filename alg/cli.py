"""`sipalg` command line: one subcommand per job, each in its own module."""

from __future__ import annotations

import argparse
import importlib
import sys

# subcommand -> (module, one-line help).  Only the chosen command's module is imported, for
# its arguments too: `sipalg status` (the LuCI page runs it every 5 s) must not load the
# engine, and `sipalg replay` works without the daemon's dependencies.
COMMANDS = {
    "run": ("alg.daemon", "run the ALG on a router (NFQUEUE + nftables), in the foreground"),
    "status": ("alg.status", "show registrations, calls, bindings and counters of a running daemon"),
    "replay": ("alg.replay", "run the engine over a pcap as if it crossed the router"),
    "firewall": ("alg.fw4", "keep fw4's uci config in step (init script and removal, as root)"),
}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser, with the arguments of `command` only (the others are listed, not imported)."""
    parser = argparse.ArgumentParser(
        prog="sipalg",
        description="SIP application layer gateway: rewrites the private addresses in SIP and SDP "
                    "crossing a NAT router, owns the port bindings and opens media pinholes in the kernel.",
    )
    parser.add_argument("--version", action="version", version="sipalg " + _version())
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(_module=module)
        if name != command:
            continue
        try:
            mod = importlib.import_module(module)
        except ImportError as e:
            p.set_defaults(_missing=str(e))
            continue
        mod.add_arguments(p)
    return parser


def chosen_command(argv: list[str]) -> str | None:
    """The subcommand named in argv: its first word that isn't an option (sipalg's own take no value)."""
    return next((a for a in argv if not a.startswith("-")), None)


def _version() -> str:
    from alg import __version__
    return __version__


def main(argv: list[str] | None = None) -> int:
    if argv is None:
        argv = sys.argv[1:]
    parser = build_parser(chosen_command(argv))
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    missing = getattr(args, "_missing", None)
    if missing:
        print("sipalg %s: not available here: %s" % (args.command, missing), file=sys.stderr)
        return 2
    mod = importlib.import_module(args._module)
    return mod.run(args)


if __name__ == "__main__":
    sys.exit(main())
