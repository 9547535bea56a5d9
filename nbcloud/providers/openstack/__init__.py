"""The OpenStack provider: nbcloud on a real OpenStack cloud, through openstacksdk."""
