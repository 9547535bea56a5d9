"""nbcloud's Jupyter server extension: what JupyterLab's Cloud side panel reads and asks
(extensions/jupyterlab), without a kernel.

It serves the server's user's cloud: the same default URI and inventory file a notebook of
that user opens (`nbcloud.core.config`), with that user's permissions; every endpoint
uses Jupyter's own authentication, and the ones that change something its XSRF check.
Enabled by `etc/jupyter/jupyter_server_config.d/nbcloud.json`, which the wheel installs.
"""
from __future__ import annotations


def _jupyter_server_extension_points() -> list[dict]:
    return [{"module": "nbcloud.ui.server"}]


def _load_jupyter_server_extension(serverapp) -> None:
    from nbcloud.ui.server.handlers import setup
    setup(serverapp.web_app, serverapp.log)
