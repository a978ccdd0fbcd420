"""`ovsgre settings`: the effective settings as JSON."""

import dataclasses
import json
import sys

from ..cluster.records import shown_url


def add_arguments(parser):
    pass


def run(settings, args):
    values = dataclasses.asdict(settings)
    values["etcd"] = [shown_url(url) for url in settings.etcd]
    json.dump(values, sys.stdout, indent=2)
    print()
    return 0
