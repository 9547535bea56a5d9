"""nbcloud: a Jupyter notebook as the console of a small IaaS cloud on libvirt/QEMU."""
from __future__ import annotations

__version__ = "0.1.0"

_magics = None


def __getattr__(name: str):
    # `import nbcloud` stays cheap (no libvirt) until the API is used.
    if name == "Cloud":
        from nbcloud.api import Cloud
        return Cloud
    raise AttributeError(name)


def load_ipython_extension(ipython) -> None:
    """`%load_ext nbcloud`."""
    global _magics
    from nbcloud.ui.magics import CloudMagics
    _magics = CloudMagics(ipython)
    ipython.register_magics(_magics)


def unload_ipython_extension(ipython) -> None:
    """`%unload_ext nbcloud`: stop the monitor's sampler thread (Cloud.close does, through
    the magics' close below) and close connections."""
    global _magics
    from nbcloud.ui import topology as topology_live
    topology_live.unload(ipython)  # no redraw after the connection below is closed
    from nbcloud.ui import console, widgets
    console.stop_all()  # live consoles read through the connection closed below
    widgets.stop_all()  # and so do the ls table's row actions
    if _magics is not None:
        _magics.close()
        _magics = None
