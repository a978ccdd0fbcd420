"""The Docker API, for the parts that run beside the calls: the janitor
and declared networks (and `status`/`doctor`).  The plugin never asks Docker
anything inside a call dockerd waits for, nor at start-up: dockerd may be
waiting for this very plugin.
"""

import logging

LOG = logging.getLogger(__name__)


def client(docker_host, timeout):
    """A Docker SDK client for docker_host (e.g. unix:///run/docker.sock);
    the SDK is imported only here, so the plugin's calls never load it."""
    import docker
    return docker.DockerClient(base_url=docker_host, timeout=timeout)


class DockerEndpoints:
    """Which endpoints Docker has on a network, through the Docker API.
    Only ever used from the janitor's thread: never inside a call dockerd
    waits for, never at start-up."""

    def __init__(self, docker_host, timeout=10):
        self.docker_host = docker_host
        self.timeout = timeout
        self._client = None

    def endpoints(self, network_id):
        import docker   # the SDK is only needed here
        try:
            if self._client is None:
                self._client = client(self.docker_host, self.timeout)
            info = self._client.api.inspect_network(network_id)
        except docker.errors.NotFound:
            return None
        except Exception as exc:   # dockerd down or restarting
            LOG.debug("janitor: Docker API: %s", exc)
            self._client = None
            return None
        return {c.get("EndpointID") for c in
                (info.get("Containers") or {}).values()}


