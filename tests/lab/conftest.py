"""The JupyterLab tier: a fresh install's JupyterLab in Debian's headless Chromium, on the
real daemon (in the test network namespace, like the integration tier)."""
