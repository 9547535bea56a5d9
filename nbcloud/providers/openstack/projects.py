"""Projects for a class on OpenStack (an admin's): one Keystone project and user per
student, with the member role on it and Nova, Neutron and Cinder quotas.

nbcloud tags the projects it makes (`nbcloud`) and deletes only those, with the user of
the same name; a project still holding servers, volumes or networks is refused, so a
student's work is never deleted behind their back by a teardown.
"""
from __future__ import annotations

from nbcloud.core.errors import AlreadyExists, CloudError, NotFound, Unsupported
from nbcloud.core.undo import Undo

TAG = "nbcloud"
ROLE = "member"
#: nbcloud's quota words -> (service, the API's name)
QUOTAS = {"instances": ("compute", "instances"), "cores": ("compute", "cores"),
          "ram": ("compute", "ram"), "networks": ("network", "network"),
          "routers": ("network", "router"), "floating_ips": ("network", "floatingip"),
          "ports": ("network", "port"), "volumes": ("volume", "volumes"),
          "gigabytes": ("volume", "gigabytes")}


class ProjectMixin:
    """The project operations of `OpenStackProvider` (providers/base.py, Projects)."""

    def _refuse_unless_admin(self) -> None:
        if not self.has("projects"):
            raise Unsupported(f"making projects on {self.cloud} needs the admin role (you "
                              f"are {', '.join(self.account[2]) or 'no role'})")

    def _own_project(self, name: str):
        found = self.conn.identity.find_project(name, domain_id="default")
        if found is None:
            raise NotFound(f"project {name!r} does not exist on {self.cloud}")
        if TAG not in (found.tags or []):
            raise CloudError(f"project {name!r} was not made by nbcloud: it is left alone")
        return found

    def project_names(self) -> list[str]:
        if not self.has("projects"):
            return []
        return sorted(p.name for p in self.conn.identity.projects(tags=TAG))

    def create_project(self, name: str, password: str, quotas: dict[str, int]) -> dict:
        """Project `name` and user `name` (member of it) with `quotas`; nothing is left if
        a step fails. Returns what a clouds.yaml entry needs (never the password)."""
        self._refuse_unless_admin()
        ident = self.conn.identity
        if ident.find_project(name, domain_id="default") is not None or \
                ident.find_user(name, domain_id="default") is not None:
            raise AlreadyExists(f"project or user {name!r} exists already on {self.cloud}")
        try:
            with Undo() as undo:   # nothing is left if a step fails
                project = ident.create_project(name=name, domain_id="default", tags=[TAG],
                                               description="made by nbcloud for a lab")
                undo.add(lambda: ident.delete_project(project, ignore_missing=True))
                user = ident.create_user(name=name, domain_id="default", password=password,
                                         default_project_id=project.id,
                                         description="made by nbcloud for a lab")
                undo.add(lambda: ident.delete_user(user, ignore_missing=True))
                ident.assign_project_role_to_user(project, user, ident.find_role(ROLE))
                self._set_quotas(project.id, quotas)
        except Exception as exc:  # noqa: BLE001  (the API's reason, in one line)
            raise CloudError(f"Keystone refused project {name!r}: "
                             f"{' '.join(str(exc).split())[:300]}") from None
        auth = self.conn.config.config.get("auth", {})
        return {"project_id": project.id, "user_id": user.id,
                "auth_url": auth.get("auth_url", ""),
                "region_name": self.conn.config.get_region_name() or ""}

    def _set_quotas(self, project_id: str, quotas: dict[str, int]) -> None:
        by_service: dict[str, dict[str, int]] = {}
        for word, value in quotas.items():
            service, key = QUOTAS[word]
            by_service.setdefault(service, {})[key] = value
        if by_service.get("compute"):
            self.conn.set_compute_quotas(project_id, **by_service["compute"])
        if by_service.get("network") and "networks" in self.capabilities:
            self.conn.set_network_quotas(project_id, **by_service["network"])
        if by_service.get("volume") and "volumes" in self.capabilities:
            self.conn.set_volume_quotas(project_id, **by_service["volume"])

    def project_quotas(self, name: str) -> dict[str, int]:
        """The quotas the cloud holds for project `name`, in nbcloud's words."""
        project = self._own_project(name)
        got = {"compute": self.conn.get_compute_quotas(project.id)}
        if "networks" in self.capabilities:
            got["network"] = self.conn.get_network_quotas(project.id)
        if "volumes" in self.capabilities:
            got["volume"] = self.conn.get_volume_quotas(project.id)
        return {word: int(got[service][key]) for word, (service, key) in QUOTAS.items()
                if service in got and got[service].get(key) is not None}

    def delete_project(self, name: str) -> None:
        """Project `name` and its user; refused while the project holds anything."""
        self._refuse_unless_admin()
        project = self._own_project(name)
        held = [f"server {s.name}" for s in self.conn.compute.servers(
            all_projects=True, project_id=project.id)]
        if "volumes" in self.capabilities:
            held += [f"volume {v.name}" for v in self.conn.block_storage.volumes(
                all_projects=True, project_id=project.id)]
        if "networks" in self.capabilities:
            held += [f"network {n.name}" for n in self.conn.network.networks(
                project_id=project.id)]
        if held:
            raise CloudError(f"project {name!r} still holds {', '.join(held[:5])}: the "
                             "student's work is not deleted for them")
        user = self.conn.identity.find_user(name, domain_id="default")
        if user is not None:
            self.conn.identity.delete_user(user, ignore_missing=True)
        self.conn.identity.delete_project(project, ignore_missing=True)

    def project_login(self, clouds_file: str, name: str) -> str:
        """Log in as a student with their clouds.yaml: who Keystone says they are."""
        import openstack
        import yaml
        try:
            with open(clouds_file) as f:
                entry = yaml.safe_load(f)["clouds"][name]
            # that file alone: OS_CLIENT_CONFIG_FILE and OS_* would otherwise come first
            conn = openstack.connect(load_yaml_config=False, load_envvars=False, **entry)
            access = conn.session.auth.get_access(conn.session)
            conn.close()
        except Exception as exc:  # noqa: BLE001
            raise CloudError(f"{name} cannot log in to {self.cloud}: "
                             f"{' '.join(str(exc).split())[:200]}") from None
        return (f"user {access.username} in project {access.project_name} (roles: "
                f"{', '.join(sorted(access.role_names))})")
