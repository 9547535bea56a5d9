"""IPython startup file for kernels of the notebook tier (installed by scripts/test.sh and
scripts/session-tier.sh): a UsageError becomes an `error` message on the kernel's output
channel. IPython only prints it to stderr, which nbval does not see, so a `%cloud` line
that failed would pass the notebook tier unnoticed. What a user sees is the same one line."""
from IPython import get_ipython
from IPython.core.error import UsageError


def _usage_error_is_an_error(shell, etype, value, tb, tb_offset=None):
    shell._showtraceback(etype, value, [f"UsageError: {value}"])


get_ipython().set_custom_exc((UsageError,), _usage_error_is_an_error)
