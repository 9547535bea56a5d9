"""`adopt NAME --ssh` on test:///default: the flags, the metadata written, the refusals
(nothing written), and the host key fetched from a real SSH server on loopback (paramiko's
server side, offering an RSA and an ed25519 key and refusing every login)."""
from __future__ import annotations

import socket
import subprocess
import threading

import paramiko
import pytest
from IPython.core.error import UsageError

from nbcloud.core.errors import AlreadyExists, CloudError, SSHError
from nbcloud.core.spec import InvalidSpec
from nbcloud.services.ssh import fingerprint
from nbcloud.workflows import hostkeys as adopt_ssh

MAC = "52:54:00:ad:00:01"


def _running_plain_domain(conn, name: str) -> None:
    """A domain as `virsh define` + `virsh start` make it: no nbcloud mark."""
    conn.defineXML(
        f"<domain type='test'><name>{name}</name><memory unit='MiB'>128</memory>"
        "<vcpu>1</vcpu><os><type>hvm</type></os><devices>"
        f"<interface type='network'><mac address='{MAC}'/><source network='default'/>"
        "</interface></devices></domain>")
    conn.lookupByName(name).create()


class _RefuseLogins(paramiko.ServerInterface):
    def get_allowed_auths(self, username):
        return "publickey"


@pytest.fixture(scope="module")
def sshd(tmp_path_factory):
    """(port, ed25519 public line) of an SSH server on 127.0.0.1 that refuses logins."""
    key_file = tmp_path_factory.mktemp("sshd") / "host"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key_file)],
                   check=True)
    ed25519 = paramiko.Ed25519Key.from_private_key_file(str(key_file))
    rsa = paramiko.RSAKey.generate(2048)
    listener = socket.create_server(("127.0.0.1", 0))
    transports = []

    def serve():
        while True:
            try:
                sock, _ = listener.accept()
            except OSError:
                return
            t = paramiko.Transport(sock)
            t.add_server_key(rsa)   # offered first: the fetch must still pick ed25519
            t.add_server_key(ed25519)
            transports.append(t)
            try:
                t.start_server(server=_RefuseLogins())
            except (paramiko.SSHException, EOFError, OSError):
                pass   # the banner probe closes at once

    threading.Thread(target=serve, daemon=True).start()
    yield listener.getsockname()[1], f"ssh-ed25519 {ed25519.get_base64()}"
    listener.close()
    for t in transports:
        t.close()


@pytest.fixture
def reach(monkeypatch, sshd):
    """Domains answer at 127.0.0.1 (a fake DHCP lease) on the loopback server's port."""
    port, _ = sshd
    fetch = adopt_ssh.fetch_host_key

    def leases(network):
        return [{"mac": MAC, "ipaddr": "127.0.0.1", "type": 0, "expirytime": 1}]
    monkeypatch.setattr(adopt_ssh, "fetch_host_key", lambda host: fetch(host, port))
    return leases


def test_fetch_host_key_prefers_ed25519_and_times_out(sshd):
    port, public = sshd
    assert adopt_ssh.fetch_host_key("127.0.0.1", port) == public
    free = socket.create_server(("127.0.0.1", 0))
    closed_port = free.getsockname()[1]
    free.close()
    with pytest.raises(CloudError, match=r"did not answer within 1 s"):
        adopt_ssh.fetch_host_key("127.0.0.1", closed_port, timeout=1.0)


def test_adopt_ssh_writes_the_pin_and_ssh_explains_a_refused_login(
        test_cloud, unique, monkeypatch, reach, sshd):
    name = unique("ad-t")
    _running_plain_domain(test_cloud.provider.conn, name)
    monkeypatch.setattr(test_cloud.provider, "leases", reach)
    done = test_cloud.adopt(name, ssh=True, user="admin", key="default")
    public = sshd[1]
    assert done.endswith(f"pinned host key {fingerprint(public)} of 127.0.0.1 (login admin "
                         "with key default): compare with the guest's console "
                         "(ssh-keygen -lf) if in doubt")
    meta = test_cloud.provider.metadata(name)
    assert {k: meta[k] for k in ("ip", "hostkey", "key", "ssh_user", "adopted")} == \
        {"ip": "127.0.0.1", "hostkey": public, "key": "default", "ssh_user": "admin",
         "adopted": "1"}
    # the loopback server takes no key: the error says nbcloud installs none
    test_cloud.provider.set_metadata(name, {**meta, "ssh_port": str(sshd[0])})
    with pytest.raises(SSHError, match=r"refused admin's login with key 'default': nbcloud "
                                       "does not install login keys on adopted instances"):
        test_cloud.instances.get(name).ssh("hostname")


def test_adopt_ssh_after_a_plain_adopt_pins_only_adopted_ones(
        test_cloud, unique, monkeypatch, reach, sshd):
    name = unique("ad-t")
    _running_plain_domain(test_cloud.provider.conn, name)
    monkeypatch.setattr(test_cloud.provider, "leases", reach)
    test_cloud.adopt(name, stack="ad-s")
    with pytest.raises(SSHError, match=f"pin it with `%cloud adopt {name} --ssh`"):
        test_cloud.instances.get(name).ssh("true")
    assert fingerprint(sshd[1]) in test_cloud.adopt(name, ssh=True)
    meta = test_cloud.provider.metadata(name)
    assert (meta["hostkey"], meta["ssh_user"], meta["stack"]) == (sshd[1], "root", "ad-s")
    # adopted by another inventory (marked, no row here): recorded and pinned again
    test_cloud.inventory.remove(test_cloud.uri, "instance", name)
    done = test_cloud.adopt(name, ssh=True, user="admin")
    assert done.startswith(f"recorded instance {name} (it carries nbcloud's mark already); "
                           f"pinned host key {fingerprint(sshd[1])}")
    assert test_cloud.provider.metadata(name)["ssh_user"] == "admin"
    # one nbcloud made (no `adopted` in its row) keeps the pin it got at creation
    test_cloud.inventory.put(test_cloud.uri, "instance", "ad-made", stack="ad-s",
                             state="running", spec={"image": "tiny"})
    with pytest.raises(AlreadyExists, match="nbcloud made it, so it pinned its host key"):
        test_cloud.adopt("ad-made", ssh=True)


def test_adopt_ssh_refusals_write_nothing(test_cloud, unique, monkeypatch):
    name = unique("ad-t")
    _running_plain_domain(test_cloud.provider.conn, name)
    monkeypatch.setattr(test_cloud.provider, "leases", lambda network: [])
    with pytest.raises(CloudError, match=rf"instance '{name}' has no address nbcloud can "
                                         rf"find \({MAC} on default\): it needs a NIC on a "
                                         "libvirt network with DHCP"):
        test_cloud.adopt(name, ssh=True)
    test_cloud.provider.conn.lookupByName(name).destroy()
    with pytest.raises(CloudError, match=f"is not running.*start it"):
        test_cloud.adopt(name, ssh=True)
    # nothing half-written: no mark, no inventory row
    assert not test_cloud.provider.domain_facts(name)["marked"]
    assert name not in [r.name for r in test_cloud.inventory.resources(test_cloud.uri,
                                                                       "instance")]
    with pytest.raises(InvalidSpec, match="--user and --key go with --ssh"):
        test_cloud.adopt(name, user="admin")
    with pytest.raises(InvalidSpec, match="--ssh is for instances"):
        test_cloud.adopt("default", "network", ssh=True)
    with pytest.raises(CloudError, match="is not a login name"):
        test_cloud.adopt(name, ssh=True, user="Bad User")
    with pytest.raises(CloudError, match="key 'ad-nokey' does not exist"):
        test_cloud.adopt(name, ssh=True, key="ad-nokey")


def test_adopt_ssh_magic(ip, monkeypatch, reach, sshd):
    from nbcloud import _magics
    cloud = _magics.api
    _running_plain_domain(cloud.provider.conn, "ad-magic")
    monkeypatch.setattr(cloud.provider, "leases", reach)
    msg = ip.run_line_magic("cloud", "adopt ad-magic --ssh --user admin")
    assert f"pinned host key {fingerprint(sshd[1])} of 127.0.0.1 (login admin" in str(msg)
    assert cloud.provider.metadata("ad-magic")["ssh_user"] == "admin"
    with pytest.raises(UsageError):
        ip.run_line_magic("cloud", "adopt ad-magic --ssh --bogus")
