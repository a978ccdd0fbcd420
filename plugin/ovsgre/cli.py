"""The `ovsgre` command line.

Each subcommand lives in `ovsgre.commands.<name>` with two functions:
`add_arguments(parser)` for its own flags and `run(settings, args) -> int`.
Every subcommand also takes every setting (`--state-dir` ...), so one
/etc/default/ovsgre serves the plugin and the tools alike.
"""

import argparse
import importlib
import sys

from . import __version__, config

COMMANDS = (
    ("serve", "run the plugin on its unix socket (foreground)"),
    ("settings", "print the effective settings as JSON"),
    ("status", "show networks, endpoints, peers and tunnels (read-only)"),
    ("doctor", "check OVS, links, tunnels, flows and the store; name fixes"),
    ("trace", "why a container cannot reach an address: its packet "
              "traced through this host's bridges"),
    ("network", "networks declared once for the whole cluster (etcd)"),
    ("host", "release what a host that is gone for good holds (etcd)"),
)


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="ovsgre",
        description="Docker network plugin: containers on one L2 network "
                    "over Open vSwitch and GRE.")
    parser.add_argument("--version", action="version", version=__version__)
    sub = parser.add_subparsers(dest="command", required=True)
    modules = {}
    for name, text in COMMANDS:
        module = importlib.import_module(f"ovsgre.commands.{name}")
        command = sub.add_parser(name, help=text, description=text)
        module.add_arguments(command)
        config.add_arguments(command)
        for action in _actions_of(command):
            config.add_arguments(action, nested=True)
        modules[name] = module
    args = parser.parse_args(argv)
    settings = config.resolve(args)
    return modules[args.command].run(settings, args)


def _actions_of(command):
    """Parsers of a subcommand's actions (`network ls`), so settings may
    follow the action too: `ovsgre network ls --etcd URL`."""
    for action in command._actions:      # argparse has no public walk
        if isinstance(action, argparse._SubParsersAction):
            yield from action.choices.values()


if __name__ == "__main__":
    sys.exit(main())
