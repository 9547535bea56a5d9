"""The all-in-one cloud's first objects, made once (find, else create): run by aio.sh up.

    bootstrap.py identity    service users, the service catalog, project and user nbcloud
    bootstrap.py resources   flavors, the external network `public`, quotas

Runs inside the cloud's namespace with Debian's python3 and openstacksdk, as the admin
of clouds.yaml (cloud nbcloud-aio-admin).
"""
from __future__ import annotations

import os
import sys
import time

import openstack

KS = "http://127.0.0.1"
# service name -> (type, port, path)
SERVICES = {
    "glance": ("image", 9292, ""),
    "placement": ("placement", 8778, ""),
    "nova": ("compute", 8774, "/v2.1"),
    "neutron": ("network", 9696, ""),
    "cinderv3": ("volumev3", 8776, "/v3/%(project_id)s"),
    "cinder": ("block-storage", 8776, "/v3/%(project_id)s"),
    "heat": ("orchestration", 8004, "/v1/%(project_id)s"),
    "designate": ("dns", 9001, "/"),
}
SERVICE_USERS = ("glance", "placement", "nova", "neutron", "cinder", "heat", "designate")
# nbcloud's families (nbcloud/flavors.py) and m1.tiny for tools that expect the classic
# name.  Root disks are never 0 (the image's size): Nova lets only admins boot those.
SIZES = ("nano", "micro", "small", "medium", "large", "xlarge")
ROOT_GIB = (1, 2, 4, 8, 10, 20)
FAMILIES = {
    "t": [(1, 128), (1, 256), (1, 512), (2, 1024), (2, 2048), (4, 4096)],
    "m": [(1, 256), (1, 512), (1, 1024), (2, 2048), (2, 4096), (4, 8192)],
    "c": [(1, 128), (2, 256), (2, 512), (4, 1024), (4, 2048), (8, 4096)],
    "r": [(1, 512), (1, 1024), (1, 2048), (2, 4096), (2, 8192), (4, 16384)],
    "d": [(1, 256), (1, 512), (1, 1024), (2, 2048), (2, 4096), (4, 8192)],
}
D_EPHEMERAL = (1, 2, 4, 8, 16, 32)
# t.* are shared-CPU flavors: Nova's libvirt driver makes these extra specs the same CFS
# quota nbcloud sets on a libvirt host (a fraction of every 100 ms per vCPU).
T_SHARE = (0.25, 0.25, 0.5, 0.5, 0.5, 0.5)
CPU_PERIOD = 100000
# nbcloud's tiers as Cinder QoS specs, applied by Nova on attach (libvirt <iotune>), with
# the caps nbcloud/providers/libvirt/volumes.py gives them on a libvirt host.
TIER_QOS = {"ssd": {"total_bytes_sec": "200000000", "total_iops_sec": "5000"},
            "hdd": {"total_bytes_sec": "10000000", "total_iops_sec": "100"}}
PUBLIC_CIDR, PUBLIC_GW = "172.24.4.0/24", "172.24.4.1"


def env(name: str) -> str:
    return os.environ[name]


def secrets() -> dict[str, str]:
    out = {}
    with open("/var/lib/nbcloud-os/secrets.env") as f:
        for line in f:
            k, _, v = line.strip().partition("=")
            out[k] = v
    return out


def identity(conn: openstack.connection.Connection) -> None:
    s = secrets()
    idc = conn.identity
    default = idc.find_domain("default") or idc.find_domain("Default")
    service = idc.find_project("service", domain_id=default.id) or idc.create_project(
        name="service", domain_id=default.id, description="the services' users")
    admin_role = idc.find_role("admin")
    member_role = idc.find_role("member")
    service_role = idc.find_role("service") or idc.create_role(name="service")
    for name in SERVICE_USERS:
        user = idc.find_user(name, domain_id=default.id)
        if user is None:
            user = idc.create_user(name=name, password=s["SERVICE_PASS"], domain_id=default.id,
                                   default_project_id=service.id)
        for role in (admin_role, service_role):
            if not idc.validate_user_has_project_role(service, user, role):
                idc.assign_project_role_to_user(service, user, role)
    heat = os.environ.get("NBCOS_HEAT", "1") != "0"
    left_out = ({"cinderv3", "cinder"} if os.environ.get("NBCOS_CINDER", "1") == "0" else set()) \
        | (set() if heat else {"heat"}) \
        | (set() if os.environ.get("NBCOS_DESIGNATE", "0") == "1" else {"designate"})
    for name, (stype, port, path) in SERVICES.items():
        if name in left_out:
            continue
        svc = idc.find_service(name)
        if svc is None:
            svc = idc.create_service(name=name, type=stype, enabled=True)
        have = {e.interface for e in idc.endpoints(service_id=svc.id)}
        for interface in ("public", "internal", "admin"):
            if interface not in have:
                idc.create_endpoint(service_id=svc.id, interface=interface,
                                    url=f"{KS}:{port}{path}", region_id="RegionOne")
    project = idc.find_project("nbcloud", domain_id=default.id) or idc.create_project(
        name="nbcloud", domain_id=default.id, description="nbcloud's test tier")
    user = idc.find_user("nbcloud", domain_id=default.id)
    if user is None:
        user = idc.create_user(name="nbcloud", password=s["NBCLOUD_PASS"],
                               domain_id=default.id, default_project_id=project.id)
    if not idc.validate_user_has_project_role(project, user, member_role):
        idc.assign_project_role_to_user(project, user, member_role)
    # the admin may act in the project too (inspect what the member made)
    admin = idc.find_user("admin", domain_id=default.id)
    if not idc.validate_user_has_project_role(project, admin, admin_role):
        idc.assign_project_role_to_user(project, admin, admin_role)
    if heat:
        heat_identity(idc, project, user, admin_role, s["SERVICE_PASS"])


def heat_identity(idc, project, user, admin_role, password: str) -> None:
    """Heat's domain for the users of its stacks, that domain's admin, its two roles."""
    domain = idc.find_domain("heat") or idc.create_domain(
        name="heat", description="owns the users and projects of Heat stacks")
    dadmin = idc.find_user("heat_domain_admin", domain_id=domain.id)
    if dadmin is None:
        dadmin = idc.create_user(name="heat_domain_admin", password=password,
                                 domain_id=domain.id)
    if not idc.validate_user_has_domain_role(domain, dadmin, admin_role):
        idc.assign_domain_role_to_user(domain, dadmin, admin_role)
    owner = idc.find_role("heat_stack_owner") or idc.create_role(name="heat_stack_owner")
    idc.find_role("heat_stack_user") or idc.create_role(name="heat_stack_user")
    if not idc.validate_user_has_project_role(project, user, owner):
        idc.assign_project_role_to_user(project, user, owner)


def flavors(conn: openstack.connection.Connection) -> None:
    have = {f.name: f for f in conn.compute.flavors(is_public=None)}
    wanted = {"m1.tiny": (1, 512, 1, 0)}
    for fam, rows in FAMILIES.items():
        for i, (size, (vcpus, mib)) in enumerate(zip(SIZES, rows)):
            wanted[f"{fam}.{size}"] = (vcpus, mib, ROOT_GIB[i], D_EPHEMERAL[i] if fam == "d" else 0)
    for name, (vcpus, ram, disk, eph) in wanted.items():
        old = have.get(name)
        if old is None or (old.vcpus, old.ram, old.disk, old.ephemeral) != (vcpus, ram, disk, eph):
            if old is not None:  # flavors are immutable: a changed size is a new flavor
                conn.compute.delete_flavor(old)
            old = conn.compute.create_flavor(name=name, vcpus=vcpus, ram=ram, disk=disk,
                                             ephemeral=eph, is_public=True)
        if name.startswith("t."):
            share = T_SHARE[SIZES.index(name[2:])]
            specs = {"quota:cpu_period": str(CPU_PERIOD),
                     "quota:cpu_quota": str(int(CPU_PERIOD * share))}
            if {k: (old.extra_specs or {}).get(k) for k in specs} != specs:
                conn.compute.create_flavor_extra_specs(old, specs)


def public_network(conn: openstack.connection.Connection) -> None:
    net = conn.network.find_network("public")
    if net is None:
        net = conn.network.create_network(
            name="public", is_router_external=True, is_shared=False,
            provider_network_type="flat", provider_physical_network="public",
            description="the flat provider network on bridge nbcos-br-ex (gateway 172.24.4.1)")
    if conn.network.find_subnet("public-subnet", network_id=net.id) is None:
        conn.network.create_subnet(
            name="public-subnet", network_id=net.id, ip_version=4, cidr=PUBLIC_CIDR,
            gateway_ip=PUBLIC_GW, is_dhcp_enabled=False,
            allocation_pools=[{"start": "172.24.4.10", "end": "172.24.4.250"}])


AGENTS = {"Linux bridge agent", "DHCP agent", "L3 agent", "Metadata agent"}


def wait_ready(conn: openstack.connection.Connection, timeout: float = 180) -> None:
    """Until nova-compute is up and every Neutron agent alive: a boot then finds a host."""
    deadline = time.monotonic() + timeout
    while True:
        compute = [s for s in conn.compute.services(binary="nova-compute") if s.state == "up"]
        alive = {a.agent_type for a in conn.network.agents() if a.is_alive}
        missing = AGENTS - alive
        if compute and not missing:
            return
        if time.monotonic() > deadline:
            raise SystemExit("not ready: " + ", ".join(
                ([] if compute else ["nova-compute is down"]) + sorted(missing)))
        time.sleep(1)


def volume_types(conn: openstack.connection.Connection) -> None:
    """Type ceph (the default in cinder.conf) on the RBD backend; ssd and hdd as nbcloud's tiers."""
    have = {t.name: t for t in conn.block_storage.types()}
    for name in ("ceph", "ssd", "hdd"):
        if name not in have:
            have[name] = conn.block_storage.create_type(
                name=name, extra_specs={"volume_backend_name": "ceph"},
                description=f"RBD pool volumes ({name})")
    # QoS specs through the block-storage API (the SDK of Debian 12 has no QoS proxy)
    bs = conn.block_storage
    qos = {q["name"]: q for q in bs.get("/qos-specs").json()["qos_specs"]}
    for tier, caps in TIER_QOS.items():
        name = f"nbcloud-{tier}"
        if name not in qos:
            body = {"qos_specs": {"name": name, "consumer": "front-end", **caps}}
            qos[name] = bs.post("/qos-specs", json=body).json()["qos_specs"]
        linked = bs.get(f"/qos-specs/{qos[name]['id']}/associations").json()
        if not any(a["id"] == have[tier].id for a in linked.get("qos_associations", [])):
            bs.get(f"/qos-specs/{qos[name]['id']}/associate?vol_type_id={have[tier].id}")


def resources(conn: openstack.connection.Connection) -> None:
    wait_ready(conn)
    flavors(conn)
    public_network(conn)
    if conn.has_service("block-storage"):
        volume_types(conn)
    project = conn.identity.find_project("nbcloud")
    # room for a course's worth of small instances (the defaults allow 10 / 20 cores)
    conn.set_compute_quotas(project.id, instances=40, cores=40, ram=51200)
    conn.set_network_quotas(project.id, floatingip=40, router=10, network=20)


def main(argv: list[str]) -> int:
    conn = openstack.connect(cloud="nbcloud-aio-admin")
    {"identity": identity, "resources": resources}[argv[1]](conn)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
