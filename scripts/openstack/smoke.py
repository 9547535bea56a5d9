"""Prove the all-in-one cloud with a real server: aio.sh smoke [--keep] [--name NAME].

Registers nbcloud's tiny image in Glance (a kernel, a ramdisk and a machine image that
names them by kernel_id / ramdisk_id), then, as the member user of project nbcloud: a key pair, a network
behind a router on `public`, a security group (ICMP, SSH), a server on flavor t.nano with
a floating IP.  Waits for ACTIVE, the DHCP lease, the guest's ready line on the console,
then pings and SSHes the floating IP from inside the namespace, the guest's host key pinned
(it comes in through user-data's ssh_keys, so nothing is trusted on first use).  Deletes
the server at the end unless --keep.  Run inside the namespace (aio.sh smoke does).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import openstack

STATE = Path("/var/lib/nbcloud-os/smoke")
NET, SUBNET, ROUTER, SG, KEY = "smoke-net", "smoke-subnet", "smoke-router", "smoke", "smoke"
CIDR = "10.77.0.0/24"
META = "http://169.254.169.254/openstack/latest/meta_data.json"
T0 = time.monotonic()


def say(msg: str) -> None:
    print(f"smoke: {time.monotonic() - T0:6.1f} s  {msg}", flush=True)


def current_image(admin, name: str, tag: str) -> str | None:
    """The id of the image `name` built from digest `tag`, if Glance has it."""
    for img in admin.image.images(name=name):
        if img.properties.get("nbcloud_digest") == tag and img.disk_format in ("raw", "qcow2"):
            return img.id
    return None


def retire(admin, name: str) -> None:
    """Rename older images `name` (servers of theirs keep running) before a new upload."""
    for img in admin.image.images(name=name):
        admin.image.update_image(img, name=f"{name}-old-{img.id[:8]}")


def upload_tiny(admin: openstack.connection.Connection, tiny: Path, name: str = "smoke-tiny") -> str:
    """The tiny image as kernel + ramdisk + machine image, public: once per build.

    All three are disk_format raw, not aki/ari/ami: Debian's Nova 26.2.2 (with the image
    format inspector of OSSA-2024-001) compares the inspected format with the claimed one
    and refuses aki/ari/ami ("Image content does not match disk_format"), while Nova
    honours kernel_id/ramdisk_id on an image of any disk format.
    """
    manifest = json.loads((tiny / "manifest.json").read_text())
    tag = manifest["digest"][:12]
    found = current_image(admin, name, tag)
    if found:
        return found
    say(f"uploading tiny image {tag} from {tiny}")
    kernel = admin.image.create_image(
        name=f"{name}-kernel", filename=str(tiny / manifest["kernel"]), disk_format="raw",
        container_format="bare", visibility="public", nbcloud_digest=tag, wait=True)
    ramdisk = admin.image.create_image(
        name=f"{name}-initrd", filename=str(tiny / "initrd.img"), disk_format="raw",
        container_format="bare", visibility="public", nbcloud_digest=tag, wait=True)
    with tempfile.NamedTemporaryFile(suffix=".img") as disk:
        disk.truncate(1 << 20)  # /init runs from the initramfs: the root disk is unused
        disk.flush()
        retire(admin, name)
        img = admin.image.create_image(
            name=name, filename=disk.name, disk_format="raw", container_format="bare",
            visibility="public", wait=True, kernel_id=kernel.id, ramdisk_id=ramdisk.id,
            os_command_line=manifest["cmdline"], nbcloud_digest=tag,
            hw_machine_type="pc")  # the cloud kernel has ata_piix, not AHCI: the config drive CD-ROM
    return img.id


def upload_debian(admin: openstack.connection.Connection, folder: Path,
                  name: str = "smoke-debian") -> str:
    """nbcloud's Debian image (cloud-init): kernel and initrd raw, the root disk qcow2."""
    meta = json.loads((folder / "image.json").read_text())
    tag = meta["digest"][:12]
    found = current_image(admin, name, tag)
    if found:
        return found
    say(f"uploading debian image {tag} from {folder}")
    kernel = admin.image.create_image(
        name=f"{name}-kernel", filename=str(folder / "vmlinuz"), disk_format="raw",
        container_format="bare", visibility="public", nbcloud_digest=tag, wait=True)
    ramdisk = admin.image.create_image(
        name=f"{name}-initrd", filename=str(folder / "initrd"), disk_format="raw",
        container_format="bare", visibility="public", nbcloud_digest=tag, wait=True)
    retire(admin, name)
    img = admin.image.create_image(
        name=name, filename=str(folder / "disk.qcow2"), disk_format="qcow2",
        container_format="bare", visibility="public", wait=True, kernel_id=kernel.id,
        ramdisk_id=ramdisk.id, os_command_line=meta["cmdline"], nbcloud_digest=tag)
    return img.id


def keys() -> tuple[Path, str, str, str]:
    """The client key pair and the guest's host key pair, made once."""
    STATE.mkdir(parents=True, exist_ok=True)
    client, host = STATE / "id_ed25519", STATE / "host_ed25519"
    for path in (client, host):
        if not path.exists():
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "smoke",
                            "-f", str(path)], check=True)
    return (client, client.with_suffix(".pub").read_text().strip(), host.read_text(),
            host.with_suffix(".pub").read_text().strip())


def network(conn: openstack.connection.Connection) -> tuple[str, str]:
    """The member's network, router (gateway on public) and security group: made once."""
    net = conn.network.find_network(NET) or conn.network.create_network(name=NET)
    subnet = conn.network.find_subnet(SUBNET) or conn.network.create_subnet(
        name=SUBNET, network_id=net.id, ip_version=4, cidr=CIDR,
        dns_nameservers=[])
    router = conn.network.find_router(ROUTER)
    if router is None:
        public = conn.network.find_network("public")
        router = conn.network.create_router(name=ROUTER,
                                            external_gateway_info={"network_id": public.id})
        conn.network.add_interface_to_router(router, subnet_id=subnet.id)
    sg = conn.network.find_security_group(SG)
    if sg is None:
        sg = conn.network.create_security_group(name=SG, description="ICMP and SSH in")
        conn.network.create_security_group_rule(security_group_id=sg.id, direction="ingress",
                                                ethertype="IPv4", protocol="icmp")
        conn.network.create_security_group_rule(security_group_id=sg.id, direction="ingress",
                                                ethertype="IPv4", protocol="tcp",
                                                port_range_min=22, port_range_max=22)
    return net.id, sg.name


def wait(what: str, probe, timeout: float, every: float = 1.0):
    deadline = time.monotonic() + timeout
    while True:
        got = probe()
        if got:
            return got
        if time.monotonic() > deadline:
            raise SystemExit(f"smoke: FAILED waiting for {what} ({timeout:.0f} s)")
        time.sleep(every)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tiny", type=Path,
                    help="the tiny image's folder (aio.sh smoke builds it from this checkout)")
    ap.add_argument("--debian", type=Path,
                    help="boot nbcloud's Debian image (cloud-init) from this folder instead")
    ap.add_argument("--keep", action="store_true", help="leave the server running")
    ap.add_argument("--name", default="smoke-1")
    ap.add_argument("--flavor", help="t.nano for tiny, m.small for debian")
    ap.add_argument("--no-volume", dest="volume", action="store_false",
                    help="skip the Cinder volume attach / write / detach round trip")
    args = ap.parse_args()
    admin = openstack.connect(cloud="nbcloud-aio-admin")
    conn = openstack.connect(cloud="nbcloud-aio")
    debian = args.debian is not None
    image_id = upload_debian(admin, args.debian) if debian else upload_tiny(admin, args.tiny)
    flavor_name = args.flavor or ("m.small" if debian else "t.nano")
    client_key, client_pub, host_priv, host_pub = keys()
    if conn.compute.find_keypair(KEY) is None:
        conn.compute.create_keypair(name=KEY, public_key=client_pub)
    net_id, sg = network(conn)
    say("network, router, security group, key pair ready")
    old = conn.compute.find_server(args.name)
    if old is not None:
        for p in conn.network.ports(device_id=old.id):
            for ip in conn.network.ips(port_id=p.id):
                conn.network.delete_ip(ip)
        conn.compute.delete_server(old)
        conn.compute.wait_for_delete(old, wait=120)
    # block style: the tiny image's YAML reader skips flow mappings
    user_data = ("#cloud-config\ndisable_root: false\nssh_keys:\n  ed25519_private: |\n"
                 + "".join(f"    {line}\n" for line in host_priv.strip().splitlines())
                 + f"  ed25519_public: {host_pub}\n")
    flavor = conn.compute.find_flavor(flavor_name)
    server = conn.compute.create_server(
        name=args.name, image_id=image_id, flavor_id=flavor.id, networks=[{"uuid": net_id}],
        key_name=KEY, security_groups=[{"name": sg}], user_data=_b64(user_data))
    say(f"server {server.id} created")
    server = conn.compute.wait_for_server(server, status="ACTIVE", wait=600, interval=1)
    say(f"ACTIVE on {server.hypervisor_hostname or 'the compute host'}")
    fixed = next(a["addr"] for addrs in server.addresses.values() for a in addrs)
    mark = "Cloud-init v." if debian else "nbcloud-ready"
    console = wait("the guest's ready line", lambda: _ready(conn, server, mark), 600, 2)
    say(f"console: {console}")
    if not debian and f"ip={fixed}" not in console:
        raise SystemExit(f"smoke: FAILED: the guest took another address than {fixed}")
    if not debian:
        say(f"DHCP lease {fixed} (the address Neutron gave the port)")
    port = next(conn.network.ports(device_id=server.id))
    public = conn.network.find_network("public")
    # first: Neutron refuses port forwardings to a port that has a 1:1 floating IP
    port_forwarding_round_trip(conn, public.id, port, fixed, client_key, host_pub)
    fip = next(conn.network.ips(port_id=port.id), None) or conn.network.create_ip(
        floating_network_id=public.id, port_id=port.id)
    say(f"floating IP {fip.floating_ip_address} -> {fixed}")
    wait("ping", lambda: subprocess.run(
        ["ping", "-c", "1", "-W", "1", fip.floating_ip_address],
        stdout=subprocess.DEVNULL).returncode == 0, 120)
    say(f"ping {fip.floating_ip_address}: answers")
    known = STATE / "known_hosts"
    known.write_text(f"{fip.floating_ip_address} {host_pub}\n")
    out = wait("ssh", lambda: _ssh(client_key, known, fip.floating_ip_address), 120, 1)
    say(f"ssh root@{fip.floating_ip_address} (host key pinned): {out}")
    meta = _ssh(client_key, known, fip.floating_ip_address,
                f"wget -qO- {META} 2>/dev/null || python3 -c "
                f"'import urllib.request as u; print(u.urlopen(\"{META}\").read().decode())'") or "{}"
    if json.loads(meta).get("uuid") != server.id:
        raise SystemExit(f"smoke: FAILED: the metadata service answered {meta[:200]!r}")
    say("metadata service (169.254.169.254, through the router) knows the server")
    if args.volume and conn.has_service("block-storage"):
        volume_round_trip(conn, server, client_key, known, fip.floating_ip_address)
    if conn.has_service("orchestration"):
        heat_round_trip(conn)
    if conn.has_service("dns"):
        dns_round_trip(conn, public.id)
    if not args.keep:
        conn.network.delete_ip(fip)
        conn.compute.delete_server(server)
        conn.compute.wait_for_delete(server, wait=120)
        say("server and floating IP deleted")
    say("PASSED")
    return 0


def port_forwarding_round_trip(conn, public_id: str, port, fixed: str, key: Path,
                               host_pub: str) -> None:
    """A floating IP of its own whose TCP port 2222 leads to the guest's 22 (no 1:1 NAT)."""
    fip = conn.network.create_ip(floating_network_id=public_id,
                                 description="smoke: port forwarding")
    try:
        conn.network.create_floating_ip_port_forwarding(
            fip, internal_port_id=port.id, internal_ip_address=fixed, internal_port=22,
            external_port=2222, protocol="tcp")
        known = STATE / "known_hosts_pf"
        known.write_text(f"[{fip.floating_ip_address}]:2222 {host_pub}\n")
        out = wait("ssh through the port forwarding", lambda: _ssh(
            key, known, fip.floating_ip_address, "hostname", port=2222), 60, 1)
        say(f"port forwarding {fip.floating_ip_address}:2222 -> {fixed}:22: ssh answers ({out})")
    finally:  # this Neutron refuses to delete a floating IP that still forwards
        for pf in conn.network.floating_ip_port_forwardings(fip):
            conn.network.delete_floating_ip_port_forwarding(fip, pf)
        conn.network.delete_ip(fip)


HEAT_TEMPLATE = {
    "heat_template_version": "2018-08-31",
    "resources": {
        "net": {"type": "OS::Neutron::Net", "properties": {"name": "smoke-heat-net"}},
        "subnet": {"type": "OS::Neutron::Subnet",
                   "properties": {"network": {"get_resource": "net"}, "cidr": "10.78.0.0/24"}},
    },
    "outputs": {"net_id": {"value": {"get_resource": "net"}}},
}


def heat_round_trip(conn) -> None:
    """A Heat stack (a network and its subnet): created, its output read, deleted."""
    old = conn.orchestration.find_stack("smoke-heat")
    if old is not None:
        conn.orchestration.delete_stack(old)
        conn.orchestration.wait_for_delete(old, wait=120)
    stack = conn.orchestration.create_stack(name="smoke-heat", template=HEAT_TEMPLATE)
    stack = conn.orchestration.wait_for_status(stack, status="CREATE_COMPLETE",
                                               failures=["CREATE_FAILED"], wait=180)
    stack = conn.orchestration.get_stack(stack)
    net_id = next(o["output_value"] for o in stack.outputs if o["output_key"] == "net_id")
    if conn.network.get_network(net_id).name != "smoke-heat-net":
        raise SystemExit("smoke: FAILED: the stack's network is not there")
    conn.orchestration.delete_stack(stack)
    conn.orchestration.wait_for_delete(stack, wait=180)
    say(f"Heat stack created (network {net_id[:8]}) and deleted")


def dns_round_trip(conn, public_id: str) -> None:
    """Designate: a zone of the project; Neutron names a floating IP in it; BIND answers."""
    zone_name = "smoke.nbcloud.test."
    zone = conn.dns.find_zone(zone_name) or conn.dns.create_zone(
        name=zone_name, email="smoke@nbcloud.test")
    wait("the zone to be ACTIVE", lambda: conn.dns.get_zone(zone).status == "ACTIVE", 60)
    fip = conn.network.create_ip(floating_network_id=public_id, dns_name="fip",
                                 dns_domain=zone_name)
    try:
        name = f"fip.{zone_name}"
        got = wait(f"BIND to answer {name}", lambda: subprocess.run(
            ["dig", "+short", "@127.0.0.1", name, "A"], capture_output=True,
            text=True).stdout.strip() or None, 60)
        if got != fip.floating_ip_address:
            raise SystemExit(f"smoke: FAILED: {name} is {got}, not {fip.floating_ip_address}")
        say(f"Designate: {name} -> {got} (Neutron's record, served by BIND)")
    finally:
        conn.network.delete_ip(fip)
        conn.dns.delete_zone(zone)


def volume_round_trip(conn, server, key: Path, known: Path, addr: str) -> None:
    """A 1 GiB Cinder volume (RBD): attach, write and read back in the guest, detach, delete."""
    before = _ssh(key, known, addr, "ls /sys/block") or ""
    vol = conn.block_storage.create_volume(name=f"{server.name}-vol", size=1)
    vol = conn.block_storage.wait_for_status(vol, status="available", wait=120, interval=1)
    say(f"volume {vol.id} available (type {vol.volume_type})")
    conn.compute.create_volume_attachment(server, volume_id=vol.id)
    conn.block_storage.wait_for_status(vol, status="in-use", wait=120, interval=1)
    new = wait("the disk in the guest", lambda: sorted(
        set((_ssh(key, known, addr, "ls /sys/block") or "").split()) - set(before.split())), 60)
    dev = f"/dev/{new[0]}"
    out = _ssh(key, known, addr, f"echo nbcloud-os > {dev} && sync && head -c 10 {dev}")
    say(f"volume attached as {dev}; wrote and read back: {out!r}")
    if out != "nbcloud-os":
        raise SystemExit("smoke: FAILED: the volume did not keep what was written")
    conn.compute.delete_volume_attachment(vol.id, server)
    conn.block_storage.wait_for_status(vol, status="available", wait=120, interval=1)
    conn.block_storage.delete_volume(vol)
    say("volume detached and deleted")


def _b64(text: str) -> str:
    import base64
    return base64.b64encode(text.encode()).decode()


def _ready(conn, server, mark: str) -> str | None:
    log = conn.compute.get_server_console_output(server).get("output", "")
    return next((line.strip() for line in log.splitlines()
                 if mark in line and (mark != "Cloud-init v." or " finished at " in line)), None)


def _ssh(key: Path, known: Path, addr: str,
         command: str = "echo $(hostname) $(uname -r) $(cat /proc/uptime)",
         port: int = 22) -> str | None:
    done = subprocess.run(
        ["ssh", "-p", str(port), "-i", str(key), "-o", f"UserKnownHostsFile={known}", "-o", "BatchMode=yes",
         "-o", "StrictHostKeyChecking=yes", "-o", "ConnectTimeout=5", f"root@{addr}", command],
        capture_output=True, text=True)
    return done.stdout.strip() if done.returncode == 0 else None


if __name__ == "__main__":
    sys.exit(main())
