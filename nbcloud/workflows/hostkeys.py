"""`adopt NAME --ssh`: pin an adopted instance's SSH host key, trust-on-first-use as
OpenSSH does, so that `inst.ssh(...)` works for a guest made with virt-install.

nbcloud made no seed for such a guest, so it knows neither its address nor its host key.
The address comes from nbcloud's reservation for the NIC's MAC, else from the network's
DHCP leases; the key is the one the server offers now (ed25519 preferred, as nbcloud pins
for its own instances). Its SHA256 fingerprint is shown so the user can compare it with
the guest's console; from then on a changed key is refused as for any instance. nbcloud
does not install a login key: the guest must accept the user's already."""
from __future__ import annotations

import re
import socket
from typing import TYPE_CHECKING

import paramiko

from nbcloud.core.errors import CloudError
from nbcloud.services import keys, ssh

if TYPE_CHECKING:
    from nbcloud.services.catalog import Services

#: How long the guest's SSH port gets to answer, then adopt gives up (nothing written).
SSH_TIMEOUT = 20.0
_USER = re.compile(r"^[a-z_][a-z0-9_.-]{0,31}$")


def check_login(user: str, key: str) -> None:
    """Refuse a bad user name or a key nbcloud cannot log in with, before any traffic."""
    if not _USER.match(user):
        raise CloudError(f"adopt --ssh: user {user!r} is not a login name (lower-case "
                         "letters, digits, '_', '-', '.'; e.g. root)")
    keys.login_key(key)   # NotFound / SSHError: no such key, or no private half


def guest_address(cloud: Services, name: str, facts: dict) -> str:
    """The IPv4 address of the first NIC of domain `name` that has one: its nbcloud
    reservation, else its DHCP lease. CloudError, saying what to do, if none."""
    if not facts["running"]:
        raise CloudError(f"instance {name!r} is not running, so it has no address to SSH "
                         f"to: start it (`virsh start {name}`) and adopt it again with --ssh")
    provider = cloud.provider
    nics = [(net, mac) for net, mac in facts["nics"] if ":" not in net and mac]
    for net, mac in nics:
        try:
            hosts = provider.network(net).hosts
        except CloudError:
            continue
        found = next((ip for h_mac, ip, _n in hosts if h_mac.lower() == mac), "")
        if found:
            return found
        leases = [lease for lease in provider.leases(net)
                  if lease.get("mac", "").lower() == mac and lease.get("ipaddr")
                  and lease.get("type", 0) == 0]   # 0: IPv4 (VIR_IP_ADDR_TYPE_IPV4)
        if leases:
            return max(leases, key=lambda lease: lease.get("expirytime", 0))["ipaddr"]
    where = ", ".join(f"{mac} on {net}" for net, mac in nics) or "no NIC on a libvirt network"
    raise CloudError(f"instance {name!r} has no address nbcloud can find ({where}): it needs "
                     "a NIC on a libvirt network with DHCP, and a lease (wait until it has "
                     "booted, then adopt it again with --ssh)")


def fetch_host_key(host: str, port: int = 22, timeout: float = SSH_TIMEOUT) -> str:
    """The host key `host` offers, as 'ssh-ed25519 AAAA...' (ed25519 asked for first).
    Nothing is authenticated: the caller shows the fingerprint for the user to check."""
    try:
        ssh.wait_for_banner(host, port, timeout=timeout, interval=0.5)
    except CloudError:
        raise CloudError(f"SSH on {host}:{port} did not answer within {timeout:.0f} s: is "
                         "an SSH server running in the guest and its port open?") from None
    try:
        sock = socket.create_connection((host, port), timeout=timeout)
    except OSError as exc:
        raise CloudError(f"could not reach SSH on {host}:{port}: {exc}") from None
    transport = paramiko.Transport(sock)
    try:
        options = transport.get_security_options()
        options.key_types = sorted(options.key_types, key=lambda t: t != "ssh-ed25519")
        transport.start_client(timeout=timeout)
        key = transport.get_remote_server_key()
    except (paramiko.SSHException, OSError, EOFError) as exc:
        raise CloudError(f"could not read the host key of {host}:{port}: {exc}") from None
    finally:
        transport.close()
    return f"{key.get_name()} {key.get_base64()}"


def pin(cloud: Services, name: str, facts: dict, user: str, key: str) -> tuple[dict, str]:
    """The metadata values that pin `name`'s host key (ip, hostkey, key, ssh_user) and the
    sentence that shows the fingerprint. Nothing is written here."""
    address = guest_address(cloud, name, facts)
    hostkey = fetch_host_key(address)
    values = {"ip": address, "hostkey": hostkey, "key": key, "ssh_user": user}
    return values, (f"pinned host key {ssh.fingerprint(hostkey)} of {address} "
                    f"(login {user} with key {key}): compare with the guest's console "
                    "(ssh-keygen -lf) if in doubt")
