"""Plans, pure: what a stack declares vs what the inventory recorded vs what the provider
has -> ordered actions, and drift. Imports nothing of an engine (import-linter checks).

    from nbcloud.plan import compute, drift
"""
from nbcloud.plan.compare import compute, drift  # noqa: F401
from nbcloud.plan.model import Action, LiveState, Plan  # noqa: F401
