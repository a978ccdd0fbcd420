"""Read-only readers of this host's ovsgre state, for `status` and `doctor`.

One module per subsystem, each reading through the same modules the plugin
uses, and changing nothing:

  localstore  the plugin's state directory (records.problems judges records)
  ovsdb       bridges, ports, interfaces (dataplane.ovsdb.read_snapshot)
  vswitchd    the ovs-vswitchd process: control socket, version, upcalls,
              start time, OpenFlow tables; the datapath expected
  kernel      links and addresses (dataplane.links), TX offload, the
              tunnel source address, pings over the underlay
  cluster     etcd records (cluster.etcd, parsed by cluster.records)
  docker      dockerd's names and container namespaces
  flowtable   dump-flows output compared with build_flows
  command     bounded subprocesses and ProbeError
  records     the shapes of what is read and of the observation

`HostProbe` (probe.py) is the one object that reads; `collect()`
(collect.py) turns its answers into the observation, a plain dict;
derive.py computes what several checks share from it.  Every external
call is bounded by a timeout and runs argv lists (never a shell).
"""
