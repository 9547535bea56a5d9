"""Terminals, without a guest: the grammar, names checked before libvirt, one-line refusals
(a provider without an interactive serial console, the test driver's domains, a stopped
instance), and the widget's JavaScript built with xterm.js inside (nothing from a CDN)."""
import re
from pathlib import Path

import pytest
from IPython.core.error import UsageError

from nbcloud.core.errors import CloudError, Unsupported


@pytest.mark.parametrize("line,words", [
    ("instance terminal", "required"),
    ("instance terminal web --sereal", "unrecognized"),
    ('instance terminal "a;rm -rf /"', "not allowed"),
    ("instance terminal nope --serial", "does not exist"),
])
def test_terminal_usage_errors_are_one_line(ip, line, words):
    with pytest.raises(UsageError) as err:
        ip.run_line_magic("cloud", line)
    assert words in str(err.value) and "\n" not in str(err.value).strip()


def test_openstack_refuses_the_serial_console_in_one_line():
    from nbcloud.providers.base import Provider
    from nbcloud.providers.openstack.compute import ComputeMixin

    class Cloudy(Provider, ComputeMixin):
        name = "openstack"
        capabilities = frozenset({"compute", "console"})
    p = Cloudy()
    p.uri = "openstack://lab"
    with pytest.raises(Unsupported) as err:
        p.require("serial")
    assert "interactive serial console" in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(Unsupported, match="SSH terminal"):
        p.open_serial("web")


def test_stopped_and_test_driver_instances_refuse_in_one_line(test_cloud, unique):
    from tests.unit.test_widgets import closed_port, make_instance
    stopped, running = unique("term-s"), unique("term-r")
    make_instance(test_cloud, stopped, closed_port(), state="stopped")
    make_instance(test_cloud, running, closed_port())
    with pytest.raises(CloudError, match="not running"):
        test_cloud.instances.get(stopped).terminal(serial=True)
    with pytest.raises(CloudError, match="start it first"):
        test_cloud.instances.get(stopped).terminal()
    # the test driver has no console to open: libvirt's refusal, in one line
    with pytest.raises(CloudError) as err:
        test_cloud.instances.get(running).terminal(serial=True)
    assert "serial console" in str(err.value) and "\n" not in str(err.value)


def test_widget_javascript_bundles_xterm_and_loads_nothing_remote():
    static = Path(__import__("nbcloud.ui.terminal", fromlist=["STATIC"]).STATIC)
    js = (static / "terminal.js").read_text()
    assert "xterm" in js and "export" in js
    assert not re.search(r"""(import\s*\(|from\s*)["']https?://""", js)
    assert ".xterm-viewport" in js                      # xterm.css, bundled as text
