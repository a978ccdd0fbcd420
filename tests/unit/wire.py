"""Calling the driver and the IPAM directly with Docker's bodies: each body
goes through the protocol layer's parsing (and the driver's through its
validation too), and the result comes back as the protocol layer's reply
(what dockerd would read)."""

from ovsgre import protocol, schema


def _ipam_spec(call, body):
    # parsed only: the IPAM itself must cope with any PoolID
    return schema.parse(call, body)


def request_pool(ipam, pool, subpool, options, v6):
    body = {"Pool": pool, "SubPool": subpool, "Options": options, "V6": v6}
    return protocol.pool_reply(ipam.request_pool(
        _ipam_spec("RequestPool", body)))


def request_address(ipam, pool_id, address, options):
    body = {"PoolID": pool_id, "Address": address, "Options": options}
    return protocol.address_reply(ipam.request_address(
        _ipam_spec("RequestAddress", body)))


def create_network(driver, network_id, options, ipv4_data, ipv6_data):
    body = {"NetworkID": network_id, "Options": options,
            "IPv4Data": ipv4_data, "IPv6Data": ipv6_data}
    clean = schema.validate("CreateNetwork", body)
    return driver.create_network(schema.parse("CreateNetwork", clean)) or {}
