"""The `ovsgre` command line."""

import argparse
import dataclasses
import json
import sys

from . import __version__, config


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="ovsgre",
        description="Docker network plugin: containers on one L2 network "
                    "over Open vSwitch and GRE.")
    parser.add_argument("--version", action="version", version=__version__)
    sub = parser.add_subparsers(dest="command", required=True)
    for name, text in (("serve", "run the plugin on its unix socket "
                        "(foreground)"),
                       ("settings", "print the effective settings as "
                        "JSON")):
        config.add_arguments(sub.add_parser(name, help=text,
                                            description=text))
    args = parser.parse_args(argv)
    settings = config.resolve(args)
    if args.command == "settings":
        json.dump(dataclasses.asdict(settings), sys.stdout, indent=2)
        print()
        return 0
    from .server import serve  # heavy imports only when serving
    serve(settings)
    return 0


if __name__ == "__main__":
    sys.exit(main())
