"""The only layer that talks to libvirt (see DESIGN.md, Layers)."""
