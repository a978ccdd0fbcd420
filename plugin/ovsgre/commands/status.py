"""`ovsgre status` (being written)."""

import sys


def add_arguments(parser):
    pass


def run(settings, args):
    print("ovsgre status: not available yet", file=sys.stderr)
    return 2
