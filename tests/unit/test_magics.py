"""The %cloud magic on libvirt's test driver: grammar, one-line errors, nothing half-made."""
import pytest
from IPython.core.error import UsageError


@pytest.mark.parametrize("bad", ['"x;rm -rf /"', '"../etc"', '"<b>"', "Web", "a_b"])
def test_bad_instance_name_is_one_line_and_creates_nothing(ip, bad):
    from nbcloud import _magics
    before = _magics.api.provider.conn.listDefinedDomains()
    ops = len(_magics.api.inventory.operations(1000))
    with pytest.raises(UsageError) as err:
        ip.run_line_magic("cloud", f"instance create {bad}")
    assert "\n" not in str(err.value) and "not allowed" in str(err.value)
    assert _magics.api.provider.conn.listDefinedDomains() == before
    assert len(_magics.api.inventory.operations(1000)) == ops


@pytest.mark.parametrize("line,words", [
    ("", "needs a command"),
    ("frobnicate", "invalid choice"),
    ("instance", "required"),
    ("instance create web --flavor t.huge", "does not exist"),
    ("instance create web --count 0", "count"),
    ("instance ssh web", "give a command"),
    ("instance ssh web -- true", "does not exist"),
    ("instance create web --user-data $nope", "no variable"),
    ("instance create 'unterminated", "cannot split"),
    ("instance create web --boot sideways", "invalid choice"),
    ("image warm nope", "does not exist"),
])
def test_usage_errors_are_one_line(ip, line, words):
    with pytest.raises(UsageError) as err:
        ip.run_line_magic("cloud", line)
    assert words in str(err.value)
    assert "\n" not in str(err.value).strip()


def test_flavor_list_renders_text_and_html(ip):
    table = ip.run_line_magic("cloud", "flavor list")
    assert len(table) == 30
    assert "t.nano" in str(table) and "<table>" in table._repr_html_()
    rows = {row["flavor"]: row for row in table}
    assert rows["t.nano"]["memory"] == "128M" and rows["t.nano"]["cpu share"] == "25%"


def test_doctor_on_test_driver(ip):
    report = ip.run_line_magic("cloud", "doctor")
    assert report["uri"] == "test:///default"
    assert report["accelerator"] == "test"
    assert "nbcloud-images" in report["pools"]


def test_html_escapes_user_strings():
    from nbcloud.core.display import Table
    html = Table(["name"], [["<script>alert(1)</script>"]])._repr_html_()
    assert "<script>" not in html and "&lt;script&gt;" in html


def test_foreign_domain_is_never_touched(ip):
    from nbcloud import _magics
    from nbcloud.core.errors import NotManaged
    conn = _magics.api.provider.conn
    # test:///default ships one domain, 'test', made by someone else
    assert "test" in [d.name() for d in conn.listAllDomains()]
    with pytest.raises(UsageError, match="not made by nbcloud"):
        ip.run_line_magic("cloud", "instance delete test")
    with pytest.raises(NotManaged):
        _magics.api.instances.delete("test")
    assert conn.lookupByName("test").isActive()
