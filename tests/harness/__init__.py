"""Test harness for ovsgre end-to-end tests.

Everything runs inside network namespaces (and, for dockerd, a private mount
namespace) created with a unique prefix, so tests never touch the root
namespace's interfaces, routes, iptables, /run/docker or /etc/docker.

Modules:
  netns   -- Netns, unique_prefix, link_json, addr_json, ethtool_features
  ovs     -- OvsInstance (ovsdb-server + ovs-vswitchd per namespace)
  dockerd -- DockerHost (dockerd per namespace, private mount namespace)
  image   -- import_busybox
  host    -- TestHost (netns + OVS + dockerd), Underlay, underlay()
  fixtures-- pytest fixtures make_host, make_underlay
"""
from .netns import Netns, unique_prefix, link_json, addr_json, ethtool_features  # noqa: F401
from .ovs import OvsInstance  # noqa: F401
from .dockerd import DockerHost  # noqa: F401
from .image import import_busybox, BUSYBOX_TAG  # noqa: F401
from .host import TestHost, Underlay, underlay, BASE_ROOT  # noqa: F401
