"""dockerd, through its API: network and container names, and the
network namespace of a running container."""

import threading

from .. import docker_api
from .command import ProbeError
from .records import DockerNames


class DockerReader:
    """One API client, made on first use and shared by threads (the
    offload readers ask for namespaces in parallel) under a lock."""

    def __init__(self, docker_host, timeout):
        self.docker_host = docker_host
        self.timeout = timeout
        self._client = None
        self._lock = threading.Lock()

    def _api(self):
        if self._client is None:
            self._client = docker_api.client(self.docker_host, self.timeout)
        return self._client.api

    def close(self):
        if self._client is not None:
            self._client.close()
            self._client = None

    def container_netns(self, container_id):
        """/proc/<pid>/ns/net of a running container, so its interfaces
        can be read also where the sandbox path is not visible (dockerd
        in another mount namespace)."""
        with self._lock:
            try:
                pid = (self._api().inspect_container(
                    container_id).get("State") or {}).get("Pid")
            except Exception as exc:
                raise ProbeError(f"Docker API: {exc}") from exc
        if not pid:
            raise ProbeError(f"container {container_id[:12]} is not running")
        return f"/proc/{pid}/ns/net"

    def inspect(self, container):
        """`docker inspect` of a container (name or ID); ProbeError when
        Docker does not know it or cannot be asked."""
        import docker   # the SDK, only for its NotFound
        with self._lock:
            try:
                return self._api().inspect_container(container)
            except docker.errors.NotFound:
                raise ProbeError(f"no container {container!r} on this "
                                 "host") from None
            except Exception as exc:
                raise ProbeError(f"Docker API at {self.docker_host}: "
                                 f"{exc}") from exc

    def names(self) -> DockerNames:
        """{"networks": {id: name}, "endpoints": {endpoint id: container
        name}, "containers": {endpoint id: container id}}."""
        with self._lock:
            try:
                return _names(self._api())
            except Exception as exc:
                raise ProbeError(f"Docker API at {self.docker_host}: "
                                 f"{exc}") from exc


def _names(client) -> DockerNames:
    networks = {n["Id"]: n["Name"] for n in client.networks()}
    endpoints, containers = {}, {}
    for ctr in client.containers(all=True):
        name = (ctr.get("Names") or ["/" + ctr["Id"][:12]])[0]
        nets = (ctr.get("NetworkSettings") or {}).get("Networks") or {}
        for net in nets.values():
            if net.get("EndpointID"):
                endpoints[net["EndpointID"]] = name.lstrip("/")
                containers[net["EndpointID"]] = ctr["Id"]
    return {"networks": networks, "endpoints": endpoints,
            "containers": containers}
