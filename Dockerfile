# The root filesystem of the ovsgre managed plugin (scripts/build-plugin.sh).
#
# BASE is a Debian 12 image that already holds python3, python3-venv and
# openvswitch-common (ovs-ofctl): nothing inside this build reaches a package
# index, so the base comes from `debootstrap --variant=minbase --include=...`
# and `docker import`, and ovsgre with its dependencies from wheels built on
# the host (`pip wheel`) and put in the build context's wheels/ directory.
ARG BASE=ovsgre/debian-base:bookworm
FROM ${BASE}

COPY wheels/ /tmp/wheels/
RUN python3 -m venv /opt/ovsgre \
 && /opt/ovsgre/bin/pip install --no-index --no-cache-dir \
        --disable-pip-version-check --find-links /tmp/wheels ovsgre \
 && rm -rf /tmp/wheels \
 && ln -s /opt/ovsgre/bin/ovsgre /usr/local/bin/ovsgre \
 && mkdir -p /run/docker/plugins /run/openvswitch /run/netns /var/lib/ovsgre \
 && ovs-ofctl --version >/dev/null \
 && ovsgre settings >/dev/null

# Docker runs config.json's entrypoint; these are for `docker run` checks.
ENV PATH=/opt/ovsgre/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
ENTRYPOINT ["/opt/ovsgre/bin/ovsgre"]
CMD ["serve"]
