"""Create -> SSH-ready on a real OpenStack: nbcloud against the OpenStack CLI, in one run.

The floor is what a user does by hand: `openstack server create --wait` with the same
image, flavor, network and the same user-data (nbcloud's cloud-config with the pinned host
key), `openstack floating ip create --port`, then the same SSH poll nbcloud makes (banner,
then `true` with the pinned key). Rounds are interleaved so a noisy machine slows both
alike; the ratio is the figure that matters.

Run inside the cloud's namespace (its APIs and floating IPs are reachable only there):
    scripts/openstack/aio.sh exec .venv/bin/python bench/openstack_boot.py [--rounds 3]
(not openstack.py: run as a script, its folder comes first on sys.path, and a module
named openstack there would hide openstacksdk)
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import machine  # noqa: E402
from timing import create_to_ssh, print_spread, save, summary  # noqa: E402

from nbcloud.api import Cloud  # noqa: E402
from nbcloud.core import cloudinit  # noqa: E402
from nbcloud.services import keys, ssh  # noqa: E402


def cli(*args: str) -> dict:
    out = subprocess.run(["openstack", "--os-cloud", CLOUD, *args, "-f", "json"],
                         check=True, capture_output=True, text=True, timeout=900)
    return json.loads(out.stdout) if out.stdout.strip() else {}


def floor_round(name: str, flavor: str, network: str) -> float:
    """`openstack server create --wait` + a floating IP + the same SSH poll; seconds."""
    host = cloudinit.new_host_key(f"{name}-host")
    user = keys.user_key("default")
    doc = cloudinit.cloud_config(name, [user.public], host.private, host.public)
    with tempfile.NamedTemporaryFile("w", suffix=".yaml") as ud:
        ud.write(doc)
        ud.flush()
        start = time.perf_counter()
        # the security groups nbcloud gives a server in no group of its own (SSH and
        # ping from anywhere, every port): the project's default group would drop SSH
        server = cli("server", "create", "--image", "tiny", "--flavor", flavor,
                     "--network", network, "--user-data", ud.name, "--config-drive", "True",
                     "--security-group", "nbcloud-ssh", "--security-group", "nbcloud-open",
                     "--wait", name)
    try:
        port = cli("port", "list", "--server", server["id"])[0]["ID"]
        fip = cli("floating", "ip", "create", "public", "--port", port)
        address = fip["floating_ip_address"]
        ssh.wait_for_banner(address, timeout=600)
        client = ssh.connect(address, host_key=host.public, key_path=user.private_path)
        try:
            ssh.run(client, "true")
        finally:
            client.close()
        return time.perf_counter() - start
    finally:
        subprocess.run(["openstack", "--os-cloud", CLOUD, "server", "delete", "--wait",
                        server["id"]], check=False, capture_output=True, timeout=600)
        if "fip" in locals():
            subprocess.run(["openstack", "--os-cloud", CLOUD, "floating", "ip", "delete",
                            fip["id"]], check=False, capture_output=True, timeout=300)


def main() -> int:
    global CLOUD
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--cloud", default=os.environ.get("NBCLOUD_OS_CLOUD", "nbcloud-aio"))
    ap.add_argument("--flavor", default="m.nano")
    ap.add_argument("--name", default="bn-os", help="the servers' name (and NAME-cli)")
    args = ap.parse_args()
    CLOUD = args.cloud
    cloud = Cloud.openstack(CLOUD, ssh_timeout=600)
    cloud.build_tiny()
    nb, fl = [], []
    for i in range(args.rounds):
        order = [("nbcloud", nb), ("cli", fl)] if i % 2 == 0 else [("cli", fl), ("nbcloud", nb)]
        for who, times in order:
            if who == "nbcloud":
                times.append(create_to_ssh(cloud, args.name, flavor=args.flavor))
            else:
                times.append(floor_round(f"{args.name}-cli", args.flavor,
                                         cloud.provider.default_network))
            print(f"  round {i + 1} {who}: {times[-1]:.1f} s", flush=True)
    n, f = summary(nb), summary(fl)
    result = {"bench": "openstack", "cloud": CLOUD, "flavor": args.flavor,
              "rounds": args.rounds, "machine": machine.describe(),
              "date": time.strftime("%Y-%m-%d %H:%M"), "nbcloud": n, "cli": f,
              "ratio": n["median"] / f["median"]}
    save("openstack", result)
    print(f"create -> SSH-ready on OpenStack ({CLOUD}), tiny image, {args.flavor}, "
          f"{args.rounds} interleaved rounds")
    print_spread((("nbcloud", n), ("openstack", f)))
    print(f"  ratio nbcloud/openstack CLI: {result['ratio']:.3f}")
    cloud.close()
    return 0


CLOUD = "nbcloud-aio"

if __name__ == "__main__":
    sys.exit(main())
