"""The lab-up runbook for a teacher on a real OpenStack (the admin's cloud), run by
papermill: an instance per student, and a Keystone project, user and quotas per student
that the student can log in with; then torn down by a second run. Keystone, Nova, Neutron
and Cinder (an admin's view) are the witness."""
from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
import yaml

from tests.openstack.conftest import ADMIN, servers

pm = pytest.importorskip("papermill")
BOOK = Path(__file__).resolve().parents[2] / "notebooks" / "runbooks" / "lab-up.ipynb"
PREFIX = "ok-lab"
STUDENTS = [f"{PREFIX}-1", f"{PREFIX}-2"]


def run(out: Path, **parameters) -> dict:
    nb = pm.execute_notebook(str(BOOK), str(out), kernel_name="python3",
                             progress_bar=False, cwd=str(out.parent),
                             parameters={"students": 2, "prefix": PREFIX,
                                         "student_projects": True,
                                         "quotas": {"instances": 3}, **parameters})
    cell = next(c for c in nb.cells if "summary" in c.metadata.get("tags", []))
    text = "".join(o.get("text", "") for o in cell.outputs if o.get("name") == "stdout")
    return json.loads(text.strip().splitlines()[-1])


@pytest.fixture
def teacher(tmp_path):
    """The admin's cloud for the runbook's kernel, with a home of its own."""
    from nbcloud.api import Cloud
    from nbcloud.inventory import Inventory
    home = tmp_path / "home"
    home.mkdir()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("NBCLOUD_HOME", str(home))
        mp.setenv("NBCLOUD_URI", f"openstack://{ADMIN}")
        cloud = Cloud.openstack(ADMIN, inventory=Inventory(home / "inventory.sqlite"))
        cloud.build_tiny()   # the lab's instances are the admin project's
        yield cloud, home
        if PREFIX in {s["name"] for s in cloud.inventory.stacks()}:
            cloud.stacks.destroy(PREFIX)
        for name in STUDENTS:
            if name in cloud.provider.project_names():
                cloud.provider.delete_project(name)
        cloud.close()


def test_a_project_user_and_quota_per_student(teacher, admin_conn, tmp_path):
    cloud, home = teacher
    summary = run(tmp_path / "up.ipynb", teardown=False)
    member = admin_conn.identity.find_role("member")
    for name in STUDENTS:
        project = admin_conn.identity.find_project(name, domain_id="default")
        user = admin_conn.identity.find_user(name, domain_id="default")
        assert "nbcloud" in project.tags and user.default_project_id == project.id
        assert admin_conn.identity.validate_user_has_project_role(project, user, member)
        compute = admin_conn.get_compute_quotas(project.id)
        assert (compute.instances, compute.cores, compute.ram) == (3, 2, 1024)
        assert admin_conn.get_network_quotas(project.id)["floatingip"] == 2
        assert admin_conn.get_volume_quotas(project.id).gigabytes == 4
        # the student's credentials: a clouds.yaml only they (and root) read, that logs in
        clouds = Path(summary["projects"][name]["clouds_file"])
        assert clouds.is_relative_to(home) and stat.S_IMODE(clouds.stat().st_mode) == 0o600
        assert summary["projects"][name]["login"].startswith(
            f"user {name} in project {name} (roles: ")
        # ... and whose password is nowhere in what the notebook showed
        secret = yaml.safe_load(clouds.read_text())["clouds"][name]["auth"]["password"]
        assert len(secret) >= 20 and secret not in (tmp_path / "up.ipynb").read_text()
        # the lab's instance of that student runs, in the teacher's project
        (server,) = servers(admin_conn, name)
        assert server.status == "ACTIVE" and server.project_id == cloud.provider.project_id
    assert summary["hostnames"] == {n: n for n in STUDENTS}

    summary = run(tmp_path / "down.ipynb", teardown=True)
    assert summary["left"] == []
    for name in STUDENTS:
        assert admin_conn.identity.find_project(name, domain_id="default") is None
        assert admin_conn.identity.find_user(name, domain_id="default") is None
        assert servers(admin_conn, name) == []
        assert not os.path.exists(summary["projects"][name]["clouds_file"])


def test_a_member_may_not_make_projects(os_cloud):
    from nbcloud.core.errors import Unsupported
    with pytest.raises(Unsupported, match="projects and users") as err:
        os_cloud.projects.create("ok-nope")
    assert "\n" not in str(err.value)
