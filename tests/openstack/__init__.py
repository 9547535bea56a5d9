"""openstack tier: nbcloud against a real OpenStack (scripts/openstack/aio.sh up)."""
