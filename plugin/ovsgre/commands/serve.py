"""`ovsgre serve`: the plugin in the foreground."""


def add_arguments(parser):
    pass


def run(settings, args):
    from ..server import serve  # heavy imports only when serving
    serve(settings)
    return 0
