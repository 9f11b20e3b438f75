"""`sipalg` command line: one subcommand per job, each in its own module."""

from __future__ import annotations

import argparse
import importlib
import sys

# subcommand -> (module, one-line help).  Modules are imported only when used,
# so `sipalg replay` works on a machine without the daemon's dependencies.
COMMANDS = {
    "run": ("alg.daemon", "run the ALG on a router (NFQUEUE + nftables), in the foreground"),
    "status": ("alg.status", "show registrations, calls, bindings and counters of a running daemon"),
    "replay": ("alg.replay", "run the engine over a pcap as if it crossed the router"),
    "demo": ("alg.lab.demo", "build a lab (phone, router with the ALG, SIP server), make one call, show what was rewritten"),
}


def build_parser() -> argparse.ArgumentParser:
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
        try:
            mod = importlib.import_module(module)
        except ImportError as e:
            p.set_defaults(_missing=str(e))
            continue
        mod.add_arguments(p)
    return parser


def _version() -> str:
    from alg import __version__
    return __version__


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
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
