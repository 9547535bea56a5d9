"""nbcloud's tests: one package per tier (unit, integration, reliability, slow, session)."""
