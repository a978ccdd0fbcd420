"""`ovsgre doctor` (being written)."""

import sys


def add_arguments(parser):
    pass


def run(settings, args):
    print("ovsgre doctor: not available yet", file=sys.stderr)
    return 2
