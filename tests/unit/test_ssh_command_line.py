"""`instance ssh NAME -- COMMAND`: the text after `--` reaches the guest's shell unchanged,
from a cell (the raw line) and from a shell (its words)."""
from __future__ import annotations

import pytest

from nbcloud.ui.commands import parse
from nbcloud.ui.commands.instance import remote_command
from nbcloud.ui.magics import split_remote


@pytest.mark.parametrize("line,head,remote", [
    ("instance ssh web -- cat /proc/cpuinfo | grep -m1 'model name'",
     "instance ssh web ", "cat /proc/cpuinfo | grep -m1 'model name'"),
    ("instance ssh web --  echo \"a  b\"  ", "instance ssh web ", 'echo "a  b"  '),
    ("instance ssh web -- echo -- $HOME {x}", "instance ssh web ", "echo -- $HOME {x}"),
    ("instance ssh web -- echo 'unbalanced", "instance ssh web ", "echo 'unbalanced"),
    ("instance ssh 'a -- b' -- true", "instance ssh 'a -- b' ", "true"),
    ('instance ssh "a -- b" -- true', 'instance ssh "a -- b" ', "true"),
    ("instance ssh a\\ -- -- true", "instance ssh a\\ -- ", "true"),
    ("instance create web --user-data x", "instance create web --user-data x", None),
    ("instance ssh web --", "instance ssh web ", ""),
])
def test_the_line_splits_at_the_first_unquoted_double_dash(line, head, remote):
    assert split_remote(line) == (head, remote)


def test_the_magic_hands_the_raw_text_over_as_one_word():
    line = "instance ssh web -- cat /proc/cpuinfo | grep -m1 'model name'"
    head, remote = split_remote(line)
    args = parse(head.split() + ["--", remote])
    assert remote_command(args.command) == "cat /proc/cpuinfo | grep -m1 'model name'"


@pytest.mark.parametrize("words,command", [
    (["--", "dmesg | tail -n 1"], "dmesg | tail -n 1"),
    (["--", "grep", "-m1", "model name", "/proc/cpuinfo"],
     "grep -m1 'model name' /proc/cpuinfo"),
    (["uname", "-a"], "uname -a"),
])
def test_shell_words_keep_their_quoting(words, command):
    assert remote_command(words) == command


def test_a_magic_line_whose_remote_part_has_unbalanced_quotes_still_parses(ip):
    from IPython.core.error import UsageError
    # the remote text is not split here: the error is the missing instance, not the quote
    with pytest.raises(UsageError, match="does not exist"):
        ip.run_line_magic("cloud", "instance ssh nosuch -- echo 'it''s")
