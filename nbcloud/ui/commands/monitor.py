"""`%cloud monitor NAME ... [--interval S]`: live CPU / memory / disk / network graphs;
`--since 10m` draws the history from the inventory instead; `--stop` stops watching NAMEs
(or, without names, stops the sampler)."""
from __future__ import annotations

from nbcloud.core.display import Message
from nbcloud.core.errors import CloudError
from nbcloud.core.spec import check_name
from nbcloud.services.monitor import check_interval, parse_duration


def add_parser(sub, name: str) -> None:
    p = sub.add_parser(name)
    p.add_argument("names", nargs="*", metavar="NAME")
    p.add_argument("--since", help="draw this much history from the inventory: 90s, 10m, 2h")
    p.add_argument("--interval", help="seconds between samples (one sampler per kernel)")
    p.add_argument("--stop", action="store_true")


def run(cloud, args, namespace):
    names = [check_name(n, "instance name") for n in args.names]
    interval = check_interval(args.interval) if args.interval is not None else None
    since = parse_duration(args.since) if args.since is not None else None
    monitor = cloud.monitor
    if args.stop:
        if names:
            monitor.unwatch(*names)
            return Message(f"stopped watching {', '.join(names)}")
        monitor.stop()
        return Message("the monitor stopped")
    if interval is not None:
        monitor.interval = interval
    if not names:
        return monitor
    if since is not None:
        from nbcloud.ui.monitor import history_figure
        fig = history_figure(monitor, names, since)
        if not any(len(trace.x or ()) for trace in fig.data):
            raise CloudError(f"no samples of {', '.join(names)} in the last {args.since}: "
                             f"watch it first with `%cloud monitor {' '.join(names)}`")
        return fig
    from nbcloud.ui.monitor import LiveView
    monitor.watch(*names)
    return LiveView(monitor, names)
