"""nbcloud: a Jupyter notebook as the console of a small IaaS cloud.

The package is layered (README, How the code is laid out): `core` and `plan` are pure,
`providers` talk to an engine, `services` hold one resource kind each, `workflows` compose
them, `api.Cloud` builds them all, and `ui` (magics, widgets, figures) is the only part
that imports IPython, ipywidgets or Plotly.
"""
from __future__ import annotations

__version__ = "0.1.0"


def __getattr__(name: str):
    # `import nbcloud` stays cheap (no libvirt) until the API is used.
    if name == "Cloud":
        from nbcloud.api import Cloud
        return Cloud
    if name == "_magics":   # the loaded CloudMagics (tests and runbooks reach the API)
        from nbcloud.ui import extension
        return extension.magics()
    raise AttributeError(name)


def load_ipython_extension(ipython) -> None:
    """`%load_ext nbcloud`."""
    from nbcloud.ui import extension
    extension.load(ipython)


def unload_ipython_extension(ipython) -> None:
    """`%unload_ext nbcloud`: stop every thread the magics started, close connections."""
    from nbcloud.ui import extension
    extension.unload(ipython)
