"""ovsgre: a Docker network plugin joining containers over Open vSwitch and GRE."""

__version__ = "0.1.0"

from .definitions import OWNER  # noqa: F401 (ovsgre.OWNER)
