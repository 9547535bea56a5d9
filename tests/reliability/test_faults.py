"""Faults: the disk fills while an image is imported, a guest never answers SSH, a guest's
SSH host key is not the one nbcloud pinned. (The libvirt daemon killed mid-create and
mid-delete is test_daemon_kill.py.)

Each fault ends in one line a student understands, and leaves nothing half-made: no
volume, file, domain, address reservation, DNS record or inventory row of the failed step.
"""
from __future__ import annotations

import http.server
import os
import subprocess
import threading
import time
from pathlib import Path

import pytest
from tests.reliability.leaks import leftovers

from nbcloud.core.errors import CloudError, SSHError
from nbcloud.providers.libvirt import images as store
from nbcloud.providers.libvirt.volumes import INSTANCE_POOL
from nbcloud.services import keys, ssh
from nbcloud.ui import commands

MiB = 1 << 20


# ----- disk full while importing -----------------------------------------------------
def _libvirtd_pid() -> int:
    for pidfile in ("/run/libvirtd.pid", "/var/run/libvirtd.pid"):
        try:
            return int(Path(pidfile).read_text().strip())
        except (OSError, ValueError):
            continue
    pytest.fail("no libvirtd pid file: the reliability tier needs the daemon of "
                "`nbcloud host up`", pytrace=False)


def _daemon_fs(path: Path, size_mib: int):
    """A small filesystem at `path` that the daemon and this process both see; returns
    its unmount.

    In the daemon's own mount namespace that is a tmpfs. Under `ip netns exec` this
    process has a mount namespace of its own, and a tmpfs cannot be mounted in two
    namespaces at once: there it is an ext4 on a loop device, mounted in both."""
    pid = _libvirtd_pid()
    if os.stat(f"/proc/{pid}/ns/mnt").st_ino == os.stat("/proc/self/ns/mnt").st_ino:
        return _tmpfs(path, f"{size_mib}m")
    path.mkdir(parents=True, exist_ok=True)
    backing = path.parent / f"{path.name}.ext4"
    with open(backing, "wb") as f:
        f.truncate(size_mib * MiB)
    subprocess.run(["mkfs.ext4", "-q", "-F", "-m", "0", "-O", "^has_journal", str(backing)],
                   check=True)
    dev = subprocess.run(["losetup", "--find", "--show", str(backing)], check=True,
                         capture_output=True, text=True).stdout.strip()
    daemon = ["nsenter", f"--mount=/proc/{pid}/ns/mnt"]
    subprocess.run([*daemon, "mount", dev, str(path)], check=True)
    subprocess.run(["mount", dev, str(path)], check=True)
    (path / "lost+found").rmdir()  # a dir pool would list it as a volume

    def umount():
        subprocess.run(["umount", str(path)], check=False)
        subprocess.run([*daemon, "umount", str(path)], check=False)
        subprocess.run(["losetup", "-d", dev], check=False)
        backing.unlink(missing_ok=True)
    return umount


def _tmpfs(path: Path, size: str):
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "rl-tmpfs",
                    str(path)], check=True)
    return lambda: subprocess.run(["umount", str(path)], check=False)


@pytest.fixture
def full_pool(cloud, tmp_path, monkeypatch):
    """A 20 MiB dir pool `rl-full` (tmpfs, or ext4 on a loop device), standing in for
    the image pool of `cloud`."""
    where = tmp_path / "rl-full"
    umount = _daemon_fs(where, 20)
    try:
        assert os.statvfs(where).f_blocks * os.statvfs(where).f_frsize <= 20 * MiB
        cloud.pools.create("rl-full", str(where))
        monkeypatch.setattr(store, "IMAGE_POOL", "rl-full")
        yield where
    finally:
        monkeypatch.undo()
        if "rl-full" in cloud.provider.pool_names():
            for vol in cloud.provider.volumes("rl-full"):  # only if a test failed
                cloud.provider.delete_volume("rl-full", vol)
            cloud.pools.delete("rl-full")
        umount()


class _Images(http.server.BaseHTTPRequestHandler):
    """Serves files of `root`; with ?nolength the body has no Content-Length (the
    importer must spool it)."""
    root: Path

    def do_GET(self):
        path, _, query = self.path.partition("?")
        data = (self.root / path.lstrip("/")).read_bytes()
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        if query != "nolength":
            self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        try:
            self.wfile.write(data)
        except OSError:  # the client gave up (disk full): nothing more to send
            pass

    def log_message(self, *args):
        pass


@pytest.fixture
def http_root(tmp_path):
    """(folder, base URL) of a loopback HTTP server serving that folder."""
    root = tmp_path / "www"
    root.mkdir()
    handler = type("Handler", (_Images,), {"root": root})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    httpd.protocol_version = "HTTP/1.0"  # no length: the body ends when the socket does
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def _blank(path: Path, size: int) -> Path:
    with open(path, "wb") as f:  # a blank raw disk, sparse on the host
        f.truncate(size)
    return path


def _import_fails_cleanly(cloud, name: str, source: str, pool_dir: Path) -> str:
    """Import through the command grammar; return the one-line error after checking that
    nothing was kept."""
    rows = cloud.inventory.resources(cloud.uri)
    with pytest.raises(CloudError) as err:
        commands.run(cloud, commands.parse(["image", "import", name, source]))
    message = str(err.value)
    assert "\n" not in message and message.isprintable()
    assert cloud.provider.volumes("rl-full") == {}, "a partial volume was left"
    assert [p.name for p in pool_dir.iterdir()] == [], "a file was left in the pool"
    assert name not in [i.name for i in cloud.images.list()]
    assert cloud.inventory.resources(cloud.uri) == rows
    assert not [o for o in cloud.inventory.unfinished() if o["name"] == name]
    return message


def test_disk_full_while_importing_leaves_nothing(cloud, full_pool, http_root, tmp_path,
                                                  monkeypatch, recorder):
    root, url = http_root
    _blank(root / "big.raw", 30 * MiB)
    _blank(root / "small.raw", 4 * MiB)
    # a local file, a download of known length, a download spooled first (no length)
    for source in (str(root / "big.raw"), f"{url}/big.raw", f"{url}/big.raw?nolength"):
        message = _import_fails_cleanly(cloud, "rl-big", source, full_pool)
        assert "No space left" in message and "rl-full" in message, message
        recorder.fault(f"disk full importing {source.split('/')[-1]}")
    # the spool folder itself full: the download cannot even be measured
    spool = tmp_path / "spool"
    umount = _tmpfs(spool, "8m")
    try:
        monkeypatch.setenv("NBCLOUD_CACHE", str(spool))
        message = _import_fails_cleanly(cloud, "rl-big", f"{url}/big.raw?nolength",
                                        full_pool)
        assert "No space left" in message and "NBCLOUD_CACHE" in message, message
        assert list(spool.iterdir()) == [], "a spool file was left"
        recorder.fault("spool folder full importing big.raw?nolength")
    finally:
        umount()
    # the same pool takes an image that fits: the refusals were about space
    image = cloud.import_image("rl-small", f"{url}/small.raw")
    assert image.disk_format == "raw" and image.size >= 4 * MiB
    cloud.images.delete("rl-small")
    assert cloud.provider.volumes("rl-full") == {}


# ----- a guest that never answers SSH ---------------------------------------------------
@pytest.fixture(scope="module")
def blank_image(cloud, tmp_path_factory):
    """`rl-blank`: a 1 MiB raw disk with nothing to boot, so its guest never answers SSH."""
    if "rl-blank" in [i.name for i in cloud.images.list()]:
        cloud.images.delete("rl-blank")
    disk = _blank(tmp_path_factory.mktemp("rl-blank") / "blank.raw", MiB)
    yield cloud.import_image("rl-blank", str(disk))
    for name in cloud.images.users("rl-blank"):
        cloud.instances.delete(name)
    cloud.images.delete("rl-blank")


@pytest.fixture
def short_ssh_timeout(cloud):
    before = cloud.ssh_timeout
    cloud.ssh_timeout = 6.0
    yield cloud.ssh_timeout
    cloud.ssh_timeout = before


def test_guest_that_never_answers_is_deleted_with_a_clear_message(
        cloud, blank_image, short_ssh_timeout, recorder):
    name = "rl-mute"
    with pytest.raises(SSHError) as err:
        commands.run(cloud, commands.parse(["instance", "create", name, "--image",
                                            "rl-blank"]))
    message = str(err.value)
    recorder.fault("guest never answers SSH (deleted)")
    assert "\n" not in message
    assert "did not answer within 6 s" in message and "was deleted" in message, message
    assert "--keep" in message
    assert leftovers(cloud, name) == []
    op = next(o for o in cloud.inventory.operations(50) if o["name"] == name)
    assert (op["verb"], op["result"]) == ("create", "failed")


def test_guest_that_never_answers_is_kept_when_asked(cloud, blank_image, short_ssh_timeout,
                                                     recorder):
    name = "rl-mute-kept"
    try:
        with pytest.raises(SSHError) as err:
            commands.run(cloud, commands.parse(["instance", "create", name, "--image",
                                                "rl-blank", "--keep"]))
        message = str(err.value)
        recorder.fault("guest never answers SSH (kept)")
        assert "\n" not in message
        assert "did not answer within 6 s" in message and "kept as asked" in message
        assert cloud.provider.state(name) == "running"
        row = next(r for r in cloud.inventory.resources(cloud.uri, "instance")
                   if r.name == name)
        assert row.state == "unreachable"
        op = next(o for o in cloud.inventory.operations(50) if o["name"] == name)
        assert op["result"] == "failed" and "kept as asked" in op["detail"]
        # kept to be looked at: its console says why (SeaBIOS finds nothing to boot)
        assert cloud.instances.get(name).state == "running"
    finally:
        if cloud.provider.exists(name):
            cloud.instances.delete(name)
    assert leftovers(cloud, name) == []


# ----- SSH host key changed -------------------------------------------------------------
# Run inside the guest: a new host key, and its SSH server restarted with it, detached
# from the session that asks for it (as if the instance had been rebuilt behind our back).
NEW_HOST_KEY = ("dropbearkey -t ed25519 -f /run/rl-new-key >/dev/null 2>&1; "
                "dropbearkey -y -f /run/rl-new-key | grep '^ssh-'; "
                "setsid sh -c 'sleep 1; kill $(cat /run/dropbear.pid); sleep 0.5; "
                "dropbear -r /run/rl-new-key -s -p 22 -P /run/dropbear.pid' "
                ">/dev/null 2>&1 </dev/null &")


def test_changed_host_key_is_refused_with_the_reason(cloud, recorder):
    name = "rl-hostkey"
    if cloud.provider.exists(name):
        cloud.instances.delete(name)
    inst = cloud.instances.create(name, image="tiny", flavor="t.nano", network="nbcloud")
    try:
        pinned = inst.meta
        offered = inst.ssh(NEW_HOST_KEY).strip()
        assert offered.startswith("ssh-ed25519 ") and offered.split()[1] not in \
            pinned["hostkey"]
        inst.close()
        login = keys.login_key(pinned.get("key", "default"))
        deadline = time.monotonic() + 60
        while True:  # until the server with the new key answers
            try:
                ssh.connect(pinned["ip"], host_key=offered, key_path=login).close()
                break
            except SSHError:
                if time.monotonic() > deadline:
                    pytest.fail("the guest's SSH server did not come back with its new key")
                time.sleep(0.5)
        # 1. the same name and address, another key: refused, with both fingerprints
        with pytest.raises(SSHError) as err:
            ssh.connect(pinned["ip"], host_key=pinned["hostkey"], key_path=login)
        recorder.fault("SSH host key changed (refused by the pinned client)")
        message = str(err.value)
        assert "\n" not in message
        assert "not the one nbcloud pinned" in message and "refusing" in message, message
        assert ssh.fingerprint(pinned["hostkey"]) in message  # what was expected ...
        assert ssh.fingerprint(offered) in message            # ... and what was offered
        # 2. through the magic's grammar: one line, and the command never runs
        with pytest.raises(SSHError) as err:
            commands.run(cloud, commands.parse(["instance", "ssh", name, "--", "touch",
                                                "/root/should-not-exist"]))
        recorder.fault("SSH host key changed (instance ssh refused)")
        assert "not the one nbcloud pinned" in str(err.value)
        assert "\n" not in str(err.value)
        # the new key pinned (as a user would after checking it): the guest answers, and
        # the refused command never ran
        cloud.provider.set_metadata(name, {**pinned, "hostkey": offered})
        out = inst.ssh("ls /root/should-not-exist 2>/dev/null || echo absent", check=False)
        assert out.strip() == "absent"
    finally:
        if cloud.provider.exists(name):
            cloud.instances.delete(name)
    assert leftovers(cloud, name) == []
    assert not [v for v in cloud.provider.volumes(INSTANCE_POOL) if v.startswith(name)]


# ----- a hostile guest; two processes changing one group and one balancer at once -------
@pytest.fixture
def hostile_guest(cloud):
    """rl-lo on a network of its own, turned hostile: it routes 127.0.0.1 through its
    gateway, as a guest reaching for the host's loopback services would."""
    from tests.guest import fresh_guest, route_loopback_via_gateway
    for inst in fresh_guest(cloud, "rl-lo", "rl-lonet", "10.151.13.0/24", "m.nano"):
        route_loopback_via_gateway(inst, cloud.provider.network("rl-lonet").gateway)
        yield inst


def test_a_guest_routing_the_hosts_loopback_reaches_nothing(cloud, hostile_guest, recorder):
    from tests.guest import attack
    fwd = cloud.floating.create("rl-lo", 22)          # from any address: route_localnet on
    try:
        recorder.fault("a guest routing 127.0.0.1 through its gateway, a forward in place")
        assert attack(hostile_guest) == []
    finally:
        cloud.floating.delete(fwd.name)


@pytest.fixture
def crowd(cloud):
    """40 defined (not started) rl- instances on rl-ccnet, a group naming itself and a
    balancer; all gone afterwards."""
    from tests.concurrent_members import define_members
    names = [f"rl-cc-{i:02d}" for i in range(40)]
    cloud.networks.create("rl-ccnet", "10.151.15.0/24")
    try:
        addresses = define_members(cloud, names, "rl-ccnet")
        cloud.secgroups.create("rl-cc")
        cloud.secgroups.add_rule("rl-cc", proto="tcp", port="22", source_group="rl-cc")
        cloud.lbs.create("rl-cclb", "rl-ccnet", port=8080)
        yield addresses
    finally:
        if "rl-cclb" in {b.name for b in cloud.lbs.list()}:
            cloud.lbs.delete("rl-cclb")
        if "rl-cc" in {g.name for g in cloud.secgroups.list()}:
            for inst in cloud.secgroups.get("rl-cc").instances:
                cloud.secgroups.instance_deleted(inst)
            cloud.secgroups.delete("rl-cc")
        for name in names:
            if cloud.provider.exists(name):
                cloud.provider.delete(name)
            cloud.provider.forget_instance_filter(name, cloud.secgroups.owner)
            cloud.ctx.inventory.remove("instance", name)
        cloud.networks.delete("rl-ccnet")


def test_two_processes_joining_one_group_and_balancer_lose_nothing(cloud, crowd, recorder):
    from tests.concurrent_members import join_from_processes, lost_members
    names = sorted(crowd)
    recorder.fault("two processes x 20 concurrent attaches to one group and one balancer")
    assert join_from_processes(cloud, "rl-cc", "rl-cclb", [names[:20], names[20:]]) == []
    recorder.lose(lost_members(cloud, "rl-cc", "rl-cclb", crowd))
