"""``bgqueue replay CLUSTER [--fleet FILE] [--json]``: query replay on demand, outside any batch.

Runs in this process against the cluster's servers (the spec from --fleet, else from the cluster's
deployment in flight, else its latest one). Changes nothing on any server but pausing green's
replication for the milliseconds the pinning takes (resumed whatever happens).
Exit codes: 0 no class differs; 1 some class differs (or blue and green could not be pinned);
2 bad input (unknown cluster, no replay section, a source that cannot be read).
"""
from __future__ import annotations

import json
import sys

import click
from rich.console import Console
from rich.table import Table

from bgqueue.app.terminal import safe
from bgqueue.model.errors import BadInput, BgqueueError


def _spec(cluster: str, fleet_file: str | None):
    from bgqueue.model.fleet import ClusterSpec, cluster_spec, load_fleet

    if fleet_file:
        spec = load_fleet(fleet_file).cluster(cluster)
    else:
        from bgqueue.adapters.runtime import get_runtime
        from bgqueue.adapters.store import deployments as deps

        store = get_runtime().store
        dep = deps.active_deployment(store, cluster) or deps.latest_deployment(store, cluster)
        if dep is None:
            raise BadInput(f"cluster {cluster!r} has no deployment in the store; name its fleet file with --fleet FILE")
        spec = cluster_spec(dep.spec)
    if not isinstance(spec, ClusterSpec):
        raise BadInput(f"cluster {cluster!r}: replay runs on mysql-provider clusters (blue and green reached by SQL)")
    if spec.replay is None:
        raise BadInput(f"cluster {cluster!r}: field replay: not configured (add a replay: section to the fleet file)")
    return spec


@click.command("replay")
@click.argument("cluster")
@click.option("--fleet", "fleet_file", type=click.Path(dir_okay=False),
              help="take the cluster from this fleet file (default: its deployment in the store)")
@click.option("--json", "as_json", is_flag=True, help="print the whole report as one JSON document")
def replay_cmd(cluster: str, fleet_file: str | None, as_json: bool) -> None:
    """Replay CLUSTER's captured read queries on blue and green at one GTID point and compare."""
    from bgqueue.adapters.mysql.replay import PinFailed
    from bgqueue.adapters.mysql.server import servers
    from bgqueue.checks.replay.run import replay_cluster

    spec = _spec(cluster, fleet_file)
    blue, green = servers(spec)
    try:
        report = replay_cluster(spec, blue, green)
    except PinFailed as e:
        raise BgqueueError(f"cluster {cluster!r}: {e}") from None
    finally:
        blue.close()
        green.close()
    data = {"cluster": cluster, **report.as_dict(limit=200)}
    if as_json:
        click.echo(json.dumps(data, indent=2, default=str))
    else:
        print_report(Console(soft_wrap=True), cluster, data)
    sys.exit(1 if data["classes_differing"] else 0)


def print_report(console: Console, cluster: str, data: dict) -> None:
    cap = data["capture"]
    console.print(safe(f"{cluster}: {data['statements_replayed']} statement(s) of {data['classes_replayed']} class(es) "
                       f"replayed at {', '.join(data['positions'][:1])} ({data['statements_per_s']} statements/s); "
                       f"{cap['statements']} read, {sum(cap['skipped'].values())} skipped"), highlight=False)
    print_classes(console, data)
    if not data["differing"]:
        console.print("no class differs", highlight=False)


def print_classes(console: Console, data: dict) -> None:
    """The differing (and declared) classes of a replay report, one example each, side by side."""
    for title, rows in (("differing", data.get("differing", [])),
                        ("declared (reported, not failing)", data.get("declared", []))):
        if not rows:
            continue
        table = Table(title=f"{len(rows)} class(es) {title}", show_lines=True)
        for col in ("class", "difference", "example", "blue", "green"):
            table.add_column(col, overflow="fold")
        for c in rows:
            ex = (c["examples"] or [{}])[0]
            what = ", ".join(f"{k} ×{n}" for k, n in c["differences"].items())
            lat = c["latency"]
            if lat and lat["regressed"]:
                what += f"{'; ' if what else ''}latency p50 ×{lat['p50_ratio']:.1f}, p95 ×{lat['p95_ratio']:.1f}"
            if c["declared"]:
                what += f" — declared: {c['declared']}"
            table.add_row(safe(c["fingerprint"][:200]), safe(what + ("\n" + ex["detail"] if ex else "")),
                          safe(ex.get("sql", "")[:300]), safe(json.dumps(ex.get("blue", {}), default=str)[:300]),
                          safe(json.dumps(ex.get("green", {}), default=str)[:300]))
        console.print(table)
