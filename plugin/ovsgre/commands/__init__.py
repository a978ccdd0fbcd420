"""Subcommands of the `ovsgre` command line (see ovsgre.cli)."""
