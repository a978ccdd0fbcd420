"""`ovsgre settings`: the effective settings as JSON."""

import dataclasses
import json
import sys


def add_arguments(parser):
    pass


def run(settings, args):
    json.dump(dataclasses.asdict(settings), sys.stdout, indent=2)
    print()
    return 0
