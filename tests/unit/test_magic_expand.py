"""`$name` / `{expr}` in a `%cloud` line: expanded like any IPython line, except the
`$VAR` of --user-data/--provision, which the command reads from the namespace itself (a
multi-line script expanded into the line would be split into words)."""
from __future__ import annotations

import pytest
from IPython.core.error import UsageError


def test_names_are_expanded_from_the_notebook(ip):
    ip.user_ns["n"] = 7
    ip.run_line_magic("cloud", "network create mx-$n --cidr 10.97.{n}.0/24 --mode isolated")
    try:
        assert "mx-7" in [row["network"] for row in ip.run_line_magic("cloud", "network list")]
    finally:
        ip.run_line_magic("cloud", "network delete mx-7")


def test_user_data_variable_reaches_the_command_whole(ip):
    ip.user_ns["ud"] = "#!/bin/sh\necho hi > /x\n"
    # the test driver has no tiny image: the line must get past parsing to that error
    with pytest.raises(UsageError, match="image 'tiny'"):
        ip.run_cell("%cloud instance create mx-ud --user-data $ud --no-wait") \
            .raise_error()
