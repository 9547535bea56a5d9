"""`%load_ext nbcloud` and `%unload_ext nbcloud`: register the magics; stop every thread
and connection they started."""
from __future__ import annotations

_magics = None


def load(ipython) -> None:
    global _magics
    from nbcloud.ui.magics import CloudMagics
    _magics = CloudMagics(ipython)
    ipython.register_magics(_magics)


def unload(ipython) -> None:
    """Stop the monitor's sampler thread (Cloud.close does, through the magics' close
    below), live topologies, consoles, terminals and row actions, then close connections."""
    global _magics
    from nbcloud.services import terminals
    from nbcloud.ui import console, topology, widgets
    topology.unload(ipython)  # no redraw after the connection below is closed
    console.stop_all()  # live consoles read through the connection closed below
    terminals.close_all()  # serial consoles too
    widgets.stop_all()  # and so do the ls table's row actions
    if _magics is not None:
        _magics.close()
        _magics = None


def magics():
    """The loaded `CloudMagics`, or None."""
    return _magics
