"""The host agent: what must keep running when no notebook is open.

One process per libvirt host, started and supervised by `nbcloud host up` (restarted if
it dies), stopped by `nbcloud host down`. It owns what kernels used to run in threads:
metric sampling (written to the inventory every tick), the instance pools' autoscaler,
DNS failover checks and load-balancer supervision; when it starts it restores what a host
restart stopped (workflows/restore.py). Kernels find it in the inventory (a heartbeat
per URI), and then read its samples instead of sampling, and leave scaling, failover
and supervision to it; they configure it by writing records (pools, policies, records,
balancers) and leases on the instances they watch.

    daemon.py      the agent itself: restore, then one loop (sample, scale, check, beat)
    supervisor.py  the supervisor process that starts it and starts it again if it dies
    control.py     `host up` / `host down`: the daemon, the agent, and what a restart loses
"""
