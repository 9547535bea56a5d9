"""Fold every bench/results/*.json into one bench.json, a Plotly chart (bench.html, written
offline with plotly.js inside; bench.png too when kaleido can render) and bench.md, the
Markdown tables the README's benchmark section shows.

    .venv/bin/python bench/report.py
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import machine  # noqa: E402

RESULTS = Path(__file__).parent / "results"
OWN = ("bench", )            # files this script writes


ORDER = ("peers-tiny", "peers-debian", "clones", "count", "memory", "magic", "plan",
         "monitor", "agent", "topology")


def load() -> dict[str, dict]:
    found = {}
    paths = sorted(RESULTS.glob("*.json"),
                   key=lambda p: (ORDER.index(p.stem) if p.stem in ORDER else len(ORDER),
                                  p.stem))
    for path in paths:
        if path.stem in OWN:
            continue
        try:
            found[path.stem] = json.loads(path.read_text())
        except ValueError:
            print(f"report: {path.name} is not JSON, left out", file=sys.stderr)
    return found


def _s(x: float) -> str:
    return f"{x:.2f} s"


def peers_md(r: dict) -> list[str]:
    res = r["results"]
    base = res.get("nbcloud")
    lines = [f"**Create → SSH-ready, {r['image']} image** (`bench/peers.py {r['image']}`, "
             f"flavor `{r['flavor']}`, {r['rounds']} interleaved rounds, {r['date']}):", "",
             "| | median | min | max | nbcloud / this |", "|---|---|---|---|---|"]
    for label, s in res.items():
        ratio = f"{base['median'] / s['median']:.2f}" if base else ""
        lines.append(f"| {label} | {_s(s['median'])} | {_s(s['min'])} | {_s(s['max'])} "
                     f"| {ratio} |")
    for label, note in r.get("notes", {}).items():
        lines.append(f"| {label} | did not run: {note.replace('|', '/')} | | | |")
    return lines + [""]


def count_md(r: dict) -> list[str]:
    lines = [f"**`--count N` → all SSH-ready** (`bench/count.py`, {r['date']}):", "",
             "| N | wall | N × one | overlap |", "|---|---|---|---|"]
    for row in r["rows"]:
        lines.append(f"| {row['count']} | {_s(row['wall'])} | {_s(row['serial'])} "
                     f"| {row['speedup']:.2f}× |")
    return lines + [""]


def ms_rows_md(title: str, r: dict) -> list[str]:
    lines = [title, "", "| | nbcloud | raw calls | ratio | target |", "|---|---|---|---|---|"]
    for row in r["rows"]:
        target = f"≤ {row['target_ms']} ms" if row.get("target_ms") else ""
        lines.append(f"| {row['what']} | {row['nbcloud_ms']} ms | {row['raw_ms']} ms "
                     f"({row['raw']}) | {row['ratio']}× | {target} |")
    return lines + [""]


def memory_md(r: dict) -> list[str]:
    lines = [f"**Host memory per tiny instance** (`bench/memory.py`, `{r['flavor']}` = "
             f"{r['guest_memory_mib']} MiB guest, QEMU VmRSS, {r['rounds']} interleaved "
             f"rounds, {r['date']}):", "",
             "| TCG tb-cache | create → SSH | vs default | QEMU CPU to SSH | vs default "
             "| RSS at SSH-ready | RSS 3 s later |",
             "|---|---|---|---|---|---|---|"]
    for row in r["rows"]:
        lines.append(f"| {row['label']} | {_s(row['boot_median'])} | "
                     f"{row['boot_vs_default']:.2f} | {_s(row.get('cpu_median', 0))} | "
                     f"{row.get('cpu_vs_default', 0):.2f} | {row['rss_ready_median']:.0f} MiB | "
                     f"{row['rss_settled_median']:.0f} MiB |")
    return lines + [""]


def clones_md(r: dict) -> list[str]:
    one = r["single"]
    lines = [f"**Warm clones vs cold boots** (`bench/clones.py`, tiny `{r['flavor']}`, "
             f"{r['date']}; base: {r['base']['what']}):", "",
             "| create → SSH-ready | median | min | max | load1 |", "|---|---|---|---|---|"]
    for kind, x in one.items():
        lines.append(f"| {kind} | {_s(x['median'])} | {_s(x['min'])} | {_s(x['max'])} "
                     f"| {min(x['load1'])}–{max(x['load1'])} |")
    lines += ["", "| N | kind | all SSH-ready | RSS / QEMU | PSS / QEMU | PSS + base file "
              "/ N | QEMU CPU-s each | libvirtd CPU-s each | load1 |",
              "|---|---|---|---|---|---|---|---|---|"]
    for row in r["rows"]:
        lines.append(f"| {row['n']} | {row['kind']} | {_s(row['wall'])} | {row['rss']} MiB "
                     f"| {row['pss']} MiB | {row.get('pss_with_base', '–')} | "
                     f"{row['qemu_cpu']} | {row['libvirtd_cpu']} | "
                     f"{row['load1_before']}→{row['load1_after']} |")
    return lines + [""]


def generic_md(name: str, r: dict) -> list[str]:
    """Another engineer's result: its rows as they are."""
    rows = r.get("rows") or []
    title = r.get("benchmark", name)
    if not rows or not isinstance(rows[0], dict):
        return [f"**{title}** (`bench/results/{name}.json`): see the file.", ""]
    cols = list(rows[0])
    lines = [f"**{title}** (`bench/{name}.py`, {r.get('date', '')}):", "",
             "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for row in rows:
        lines.append("| " + " | ".join(str(row.get(c, "")) for c in cols) + " |")
    return lines + [""]


def markdown(found: dict[str, dict], host: dict) -> str:
    lines = [f"Machine: {host['cpu']}, {host['cores']} cores, Linux {host['kernel']}, "
             f"libvirt {host.get('libvirt', '?')}, QEMU {host.get('qemu', '?')}; "
             f"{host['busy']} when the report was made (load {host['load_5m']} over 5 min "
             f"on {host['cores']} cores).", ""]
    for name, r in found.items():
        if name.startswith("peers-"):
            lines += peers_md(r)
        elif name == "count":
            lines += count_md(r)
        elif name == "plan":
            lines += ms_rows_md(f"**Plan and list** (`bench/plan.py`, test:///default, "
                                f"medians of {r['runs']}):", r)
        elif name == "magic":
            lines += ms_rows_md(f"**Magic overhead** (`bench/magic.py`, test:///default, "
                                f"medians of {r['runs']}):", r)
        elif name == "memory":
            lines += memory_md(r)
        elif name == "clones":
            lines += clones_md(r)
        elif name != "boot":     # boot.json: the older nbcloud-vs-floor run, now in peers
            lines += generic_md(name, r)
    return "\n".join(lines)


def figure(found: dict[str, dict]):
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    panels = []
    for name in ("peers-tiny", "peers-debian"):
        if name in found:
            panels.append((f"create → SSH-ready, {found[name]['image']} (s)", name))
    for name in ("clones", "count", "memory", "magic", "plan"):
        if name in found:
            panels.append(({"clones": "warm clones vs cold: --count N → all SSH-ready (s)",
                            "count": "--count N → all SSH-ready (s)",
                            "memory": "QEMU RSS per tiny instance (MiB) by tb-cache",
                            "magic": "%cloud instance list, 1,000 instances (ms)",
                            "plan": "plan / ls (ms)"}[name], name))
    for name, r in found.items():
        if name not in dict((p[1], 0) for p in panels) and name != "boot" \
                and isinstance(r.get("rows"), list) and r["rows"]:
            panels.append((r.get("benchmark", name), name))
    cols = 2
    rows = (len(panels) + cols - 1) // cols or 1
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=[p[0] for p in panels])
    for i, (_, name) in enumerate(panels):
        r, pos = found[name], {"row": i // cols + 1, "col": i % cols + 1}
        if name.startswith("peers-"):
            labels = list(r["results"])
            med = [r["results"][k]["median"] for k in labels]
            fig.add_trace(go.Bar(
                x=labels, y=med, name=name, showlegend=False,
                error_y={"type": "data", "symmetric": False,
                         "array": [r["results"][k]["max"] - m for k, m in zip(labels, med)],
                         "arrayminus": [m - r["results"][k]["min"]
                                        for k, m in zip(labels, med)]}), **pos)
        elif name == "clones":
            for kind in ("clone", "cold"):
                got = [row for row in r["rows"] if row["kind"] == kind]
                fig.add_trace(go.Scatter(x=[row["n"] for row in got],
                                         y=[row["wall"] for row in got], name=kind,
                                         mode="lines+markers"), **pos)
        elif name == "count":
            n = [row["count"] for row in r["rows"]]
            fig.add_trace(go.Scatter(x=n, y=[row["wall"] for row in r["rows"]],
                                     name="wall", mode="lines+markers"), **pos)
            fig.add_trace(go.Scatter(x=n, y=[row["serial"] for row in r["rows"]],
                                     name="N × one", mode="lines+markers"), **pos)
        elif name == "memory":
            fig.add_trace(go.Bar(x=[row["label"] for row in r["rows"]],
                                 y=[row["rss_settled_median"] for row in r["rows"]],
                                 name="RSS MiB", showlegend=False), **pos)
        elif name in ("magic", "plan"):
            what = [row["what"] for row in r["rows"]]
            fig.add_trace(go.Bar(x=what, y=[row["nbcloud_ms"] for row in r["rows"]],
                                 name="nbcloud ms"), **pos)
            fig.add_trace(go.Bar(x=what, y=[row["raw_ms"] for row in r["rows"]],
                                 name="raw ms"), **pos)
        else:   # another engineer's rows: the timing columns (ms) against "what"
            rows_ = r["rows"]
            keys = list(rows_[0])
            x = [str(row.get("what", row.get(keys[0]))) +
                 (f" ({row['nodes']})" if "nodes" in row else "") for row in rows_]
            for key in keys:
                if (key.endswith(("ms", "_per_tick")) and not key.startswith("target")
                        and all(isinstance(row.get(key), (int, float)) for row in rows_)):
                    fig.add_trace(go.Bar(x=x, y=[row[key] for row in rows_],
                                         name=f"{name}: {key}"), **pos)
    fig.update_layout(height=380 * rows, width=1200, barmode="group",
                      title="nbcloud benchmarks (bench/results/bench.json)")
    return fig


def main() -> int:
    found = load()
    host = machine.describe()
    combined = {"date": time.strftime("%Y-%m-%d %H:%M"), "machine": host,
                "benchmarks": found}
    (RESULTS / "bench.json").write_text(json.dumps(combined, indent=1))
    md = markdown(found, host)
    (RESULTS / "bench.md").write_text(md + "\n")
    fig = figure(found)
    fig.write_html(RESULTS / "bench.html", include_plotlyjs=True, full_html=True)
    wrote = ["bench.json", "bench.md", "bench.html"]
    try:
        fig.write_image(RESULTS / "bench.png")
        wrote.append("bench.png")
    except Exception as exc:   # kaleido missing, or no browser for it: the HTML stands
        why = " ".join(str(exc).split())[:160]
        print(f"report: no PNG ({type(exc).__name__}: {why})")
    print(md)
    print(f"report: wrote {', '.join('bench/results/' + w for w in wrote)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
