"""Operator commands. Exit codes: 0 success; 1 ran and did not succeed; 2 bad input (nothing changed)."""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import click
from rich.console import Console

from bgqueue.app.replay_cmd import replay_cmd
from bgqueue.app.terminal import plain, safe
from bgqueue.model.errors import BadInput, BgqueueError

out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)


class _Group(click.Group):
    """Turns BgqueueError into its exit code and a one-line message on stderr (the message carries
    fleet keys and server text: printed as written, never as markup or escape sequences)."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except BgqueueError as e:
            err.print(f"[red]error:[/] {safe(e)}", highlight=False, soft_wrap=True)
            if _json_requested():
                click.echo(json.dumps(error_document(e, e.exit_code), indent=2))
            ctx.exit(e.exit_code)
        except click.UsageError as e:
            if _json_requested():
                click.echo(json.dumps(error_document(e, e.exit_code), indent=2))
            raise


EXIT_MEANING = {0: "success", 1: "ran and did not succeed (see the clusters' reasons)",
                2: "bad input: nothing was changed"}


def _json_requested() -> bool:
    return "--json" in sys.argv[1:]


def error_document(e: BaseException, code: int) -> dict:
    """What a --json command prints when it fails: every error, located where known."""
    errors = [e, *getattr(e, "others", [])]
    return {"ok": False, "exit_code": code, "meaning": EXIT_MEANING.get(code, "error"),
            "errors": [{"message": plain(str(x).split("\n  also: ")[0]), "type": type(x).__name__,
                        **{k: getattr(x, k) for k in ("path", "line", "cluster", "field")
                           if getattr(x, k, None) is not None}} for x in errors]}


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("bgqueue")
    except PackageNotFoundError:
        return "unknown (not installed)"


@click.group(cls=_Group)
@click.version_option(_version(), "--version", prog_name="bgqueue", message="%(prog)s %(version)s")
def main() -> None:
    """bgqueue: blue/green switchovers for fleets of MySQL-family databases."""
    import os

    from bgqueue.adapters import logs
    from config.settings import get_settings

    logs.configure(json_mode=get_settings().log_json, level=os.environ.get("BGQUEUE_LOG_LEVEL", "WARNING"))


def _only(value: str | None) -> list[str] | None:
    return [v.strip() for v in value.split(",") if v.strip()] if value else None


# --- fleet ---------------------------------------------------------------------------


@main.group(cls=_Group)
def fleet() -> None:
    """Check or run a fleet file."""


@fleet.command("check")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--only", help="comma-separated cluster names")
@click.option("--json", "as_json", is_flag=True, help="print JSON on stdout (a JSON error document on failure)")
def fleet_check(file: str, only: str | None, as_json: bool) -> None:
    """Validate FILE and reach every server; change nothing. Exit 2 on bad input, 1 when only
    the servers' state is wrong (replication stopped, a server down), 0 when every cluster is ready."""
    from bgqueue.engine.preflight import check_clusters
    from bgqueue.model.fleet import check_credentials, load_fleet

    spec = load_fleet(file)
    clusters = spec.select(_only(only))
    check_credentials(spec, file, clusters)
    from bgqueue.engine.batches import check_budgets

    estimates = check_budgets(spec, clusters, file)  # over budget_per_hour: exit 2, like fleet run
    for e in estimates:
        if not as_json:
            out.print(safe(f"cost estimate: green environments about {e['green_per_hour']:.2f} {e.get('currency', '')}/h "
                           f"while they coexist with blue (budget_per_hour {spec.budget_per_hour:g})"), highlight=False)
    results = check_clusters(clusters)
    if as_json:
        click.echo(json.dumps([{"cluster": r.cluster, "ok": r.ok,
                                "problems": [{"field": f, "message": m} for f, m in r.problems],
                                "state_problems": [{"field": f, "message": m} for f, m in r.state_problems],
                                "facts": r.facts} for r in results], indent=2))
    for r in results:
        for field, message in r.problems:
            err.print(safe(f"{file}: cluster {r.cluster!r}: field {field}: {message}"), highlight=False,
                      soft_wrap=True)
        for field, message in r.state_problems:
            err.print(safe(f"{file}: cluster {r.cluster!r}: field {field}: not ready (fleet run would record it "
                           f"NO_GO): {message}"), highlight=False, soft_wrap=True)
        if r.ok and not as_json:
            out.print(safe(f"{r.cluster}: ok ({r.summary()})"), highlight=False)
    if any(r.problems for r in results):
        sys.exit(2)
    if any(r.state_problems for r in results):
        sys.exit(1)


@fleet.command("register")
@click.argument("file", type=click.Path(dir_okay=False))
def fleet_register(file: str) -> None:
    """Include FILE's clusters in the nightly validations."""
    from bgqueue.adapters.runtime import get_runtime
    from bgqueue.engine.nightly import register

    out.print(f"registered {safe(register(get_runtime(), file))}")


@fleet.command("unregister")
@click.argument("file", type=click.Path(dir_okay=False))
def fleet_unregister(file: str) -> None:
    """Stop including FILE's clusters in the nightly validations."""
    from bgqueue.adapters.runtime import get_runtime
    from bgqueue.engine.nightly import unregister

    if not unregister(get_runtime(), file):
        raise BadInput(f"{file} is not registered")
    out.print(f"unregistered {safe(file)}")


@fleet.command("run")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--only", help="comma-separated cluster names")
@click.option("--wait", is_flag=True, help="show progress and return when every deployment is terminal")
@click.option("--json", "as_json", is_flag=True, help="print one JSON summary (a JSON error document on failure)")
@click.option("--timeout", type=float, default=3600.0, show_default=True, help="with --wait: give up after (seconds)")
@click.option("--strict", is_flag=True,
              help="refuse the whole batch when any cluster's servers are not ready (default: that cluster is NO_GO)")
def fleet_run(file: str, only: str | None, wait: bool, as_json: bool, timeout: float, strict: bool) -> None:
    """Enqueue one batch for FILE (every cluster, or --only). A cluster whose servers are not
    ready (replication stopped, a server down) is recorded NO_GO at once; the others run.
    Exit 0 when every cluster switched (without --wait: was enqueued), 1 when any is NO_GO or
    failed, 2 on bad input (nothing enqueued)."""
    from tasks.batch import enqueue_fleet

    opened = enqueue_fleet(file, _only(only), strict=strict)
    for cluster, reason in opened.no_go.items():
        err.print(safe(f"{file}: cluster {cluster!r}: NO_GO: {reason}"), highlight=False, soft_wrap=True)
    warnings = [] if len(opened.no_go) == len(opened.deployments) else _worker_warnings()
    warnings += list(opened.warnings)  # e.g. a billing permission missing: the batch goes on
    for w in warnings:
        err.print(f"[yellow]warning:[/] {safe(w)}", highlight=False, soft_wrap=True)
    if not wait:
        if as_json:
            click.echo(json.dumps({"batch": opened.batch_id, "deployments": opened.deployments,
                                   "no_go": opened.no_go, "ok": not opened.no_go, "warnings": warnings,
                                   "exit_code": 1 if opened.no_go else 0}))
        else:
            enqueued = [c for c in opened.deployments if c not in opened.no_go]
            out.print(safe(f"batch {opened.batch_id} enqueued: {', '.join(enqueued) or 'nothing'}"
                           + (f"; NO_GO at preflight: {', '.join(opened.no_go)}" if opened.no_go else "")))
        sys.exit(1 if opened.no_go else 0)
    from bgqueue.adapters.runtime import get_runtime
    from bgqueue.app.progress import wait_for_batch
    from bgqueue.app.views import batch_dict, print_batch

    rt = get_runtime()
    wait_for_batch(rt, opened.batch_id, timeout=timeout, console=None if as_json else err)
    data = batch_dict(rt, opened.batch_id)
    data["warnings"] = warnings
    if as_json:
        click.echo(json.dumps(data, indent=2))
    else:
        print_batch(out, data)
    sys.exit(0 if data["ok"] else 1)


def _worker_warnings(timeout_s: float = 1.0) -> list[str]:
    """A batch waits in the queue until a worker takes it: say so at once when none answers."""
    from tasks.application import app

    try:
        replies = app.control.ping(timeout=timeout_s, limit=1)
    except Exception as e:  # the broker itself: the enqueue just worked, so this is rare
        return [f"could not ping the Celery workers: {type(e).__name__}: {e}"]
    if replies:
        return []
    return [f"no Celery worker answered a ping within {timeout_s:g}s: the batch waits in the queue until one "
            "starts (`celery -A tasks worker -Q bgqueue`, the Procfile's worker entry)"]


# --- status --------------------------------------------------------------------------


@main.command("status")
@click.argument("ref", required=False)
@click.option("--json", "as_json", is_flag=True, help="print JSON on stdout (a JSON error document on failure)")
def status(ref: str | None, as_json: bool) -> None:
    """Show recent batches, one batch (BATCH_ID or a unique prefix), or one CLUSTER."""
    from bgqueue.adapters.runtime import get_runtime
    from bgqueue.adapters.store import deployments as deps
    from bgqueue.app.views import batch_dict, deployment_dict, print_batch, print_deployment

    rt = get_runtime()
    if ref is None:
        from bgqueue.engine.nightly import latest_run

        data = [batch_dict(rt, b.id) for b in deps.recent_batches(rt.store)]
        night = latest_run(rt)
        if as_json:
            click.echo(json.dumps({"batches": data, "nightly": night}, indent=2))
            return
        if not data:
            out.print("no batches yet")
        for b in data:
            print_batch(out, b)
        if night is not None:
            bad = [r for r in night["results"] if r["status"] != "pass"]
            out.print(safe(f"nightly run {night['run']} ({night['finished_at']}): {night['clusters']} clusters, "
                           f"{night['findings']} finding(s)"))
            for r in bad:
                out.print(f"  [red]{safe(r['cluster'])} {safe(r['check'])}[/]: {safe(r['reason'])}")
        return
    batch = deps.find_batch(rt.store, ref)
    if batch is not None:
        data = batch_dict(rt, batch.id)
        click.echo(json.dumps(data, indent=2)) if as_json else print_batch(out, data)
        return
    dep = deps.latest_deployment(rt.store, ref)
    if dep is None:
        raise BadInput(f"{ref!r} is neither a batch id nor a cluster with a deployment")
    d = deployment_dict(rt, dep, detail=True)
    click.echo(json.dumps(d, indent=2)) if as_json else print_deployment(out, d)


@main.command("signoff")
@click.argument("cluster")
@click.option("--team", required=True, help="the team signing off (one of the cluster's signoffs)")
@click.option("--by", "by", required=True, help="who signs")
@click.option("--fleet", "fleet_file", type=click.Path(dir_okay=False),
              help="take the change from this fleet file (default: the cluster's deployment in flight)")
@click.option("--note", default=None, help="a free-text note kept with the sign-off")
def signoff(cluster: str, team: str, by: str, fleet_file: str | None, note: str | None) -> None:
    """Record TEAM's sign-off of the change CLUSTER is to receive (valid for that change only)."""
    from bgqueue.adapters.runtime import get_runtime
    from bgqueue.adapters.store import deployments as deps
    from bgqueue.adapters.store import validation as records
    from bgqueue.model.fleet import cluster_spec, load_fleet

    rt = get_runtime()
    if fleet_file:
        spec = load_fleet(fleet_file).cluster(cluster)
    else:
        dep = deps.active_deployment(rt.store, cluster)
        if dep is None:
            raise BadInput(f"cluster {cluster!r} has no deployment in flight; name the change with --fleet FILE")
        spec = cluster_spec(dep.spec)
    if team not in spec.signoffs:
        raise BadInput(f"team {team!r} is not a sign-off team of cluster {cluster!r} "
                       f"(teams: {', '.join(spec.signoffs) or 'none'})")
    key = spec.change_key()
    records.add_signoff(rt.store, cluster, key, team, by, note)
    out.print(safe(f"{cluster}: {team} signed off change {key} ({spec.change.description or 'no description'}) "
                   f"by {by}"))


@main.command("rollback")
@click.argument("cluster")
@click.option("--yes", is_flag=True, help="do not ask for confirmation")
@click.option("--no-wait", is_flag=True, help="enqueue and return")
@click.option("--timeout", type=float, default=600.0, show_default=True, help="give up waiting for the rollback after (seconds)")
def rollback_cmd(cluster: str, yes: bool, no_wait: bool, timeout: float) -> None:
    """Switch CLUSTER back to blue (possible while reverse replication keeps blue current)."""
    import getpass

    from bgqueue.adapters.runtime import get_runtime
    from bgqueue.adapters.store import deployments as deps
    from bgqueue.adapters.store import journal
    from bgqueue.engine.rollback import preconditions
    from bgqueue.model.errors import ClusterBusy

    rt = get_runtime()
    dep = deps.latest_deployment(rt.store, cluster)
    if dep is None:
        raise BadInput(f"cluster {cluster!r} has no deployment")
    problems = preconditions(rt, dep)
    if problems:
        raise ClusterBusy(f"rollback of {cluster!r} refused: " + "; ".join(problems))
    if not yes:
        if not sys.stdin.isatty():
            raise BadInput("rollback needs --yes when not run from a terminal")
        click.confirm(plain(f"Roll {cluster} back to blue {dep.spec['blue']['host']}:{dep.spec['blue']['port']}?"),
                      abort=True)
    from tasks.deployment import rollback as rollback_task

    # Only what this request leads to counts: an earlier attempt's refusal is history.
    seen = max((s.id for s in journal.steps(rt.store, dep.id, "rollback")), default=0)
    rollback_task.apply_async((f"manual rollback by {getpass.getuser()}", dep.id), ignore_result=True)
    if no_wait:
        out.print(safe(f"rollback of {cluster} enqueued (deployment {dep.id})"))
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        d = deps.get_deployment(rt.store, dep.id)
        if d.phase in ("ROLLED_BACK", "FAILED"):
            break
        mine = [s for s in journal.steps(rt.store, dep.id, "rollback") if s.id > seen]
        if any(s.name == "aborted" for s in mine) and d.phase != "ROLLING_BACK":
            break
        refused = [s for s in mine if s.name == "refused"]
        if refused:
            raise ClusterBusy(f"rollback of {cluster!r} refused: " + "; ".join(refused[-1].detail["problems"]))
        time.sleep(0.1)
    d = deps.get_deployment(rt.store, dep.id)
    out.print(safe(f"{cluster}: {d.phase}" + (f" — {d.reason}" if d.reason else "")))
    sys.exit(0 if d.phase == "ROLLED_BACK" else 1)


@main.command("decommission")
@click.argument("cluster")
@click.option("--force", is_flag=True, help="before the retention period ends (rollback becomes impossible)")
@click.option("--yes", is_flag=True, help="confirm --force (it ends the possibility of a rollback)")
def decommission_cmd(cluster: str, force: bool, yes: bool) -> None:
    """Stop reverse replication on CLUSTER's old primary and report it free."""
    from bgqueue.adapters.runtime import get_runtime
    from bgqueue.adapters.store import deployments as deps
    from bgqueue.engine.retention import decommission

    rt = get_runtime()
    dep = deps.latest_deployment(rt.store, cluster)
    if dep is None:
        raise BadInput(f"cluster {cluster!r} has no deployment")
    if force and not yes:
        raise BadInput("--force ends the possibility of a rollback: confirm with --yes")
    out.print(safe(f"{cluster}: {decommission(rt, dep.id, force=force)}"))


@main.command("nightly")
@click.option("--now", "now", is_flag=True,
              help="run the nightly validations in this process now (Celery beat runs them every night)")
@click.option("--json", "as_json", is_flag=True, help="print JSON on stdout (a JSON error document on failure)")
def nightly_cmd(now: bool, as_json: bool) -> None:
    """The nightly validations of every registered fleet, on demand. Exit 1 when anything is found."""
    if not now:
        raise click.UsageError("say --now to run the nightly validations here (beat runs them every night)")
    from bgqueue.adapters.runtime import get_runtime
    from bgqueue.engine.nightly import registered, run_now

    rt = get_runtime()
    if not registered(rt):
        raise BadInput("no fleet file is registered: bgqueue fleet register FILE")
    summary = run_now(rt)
    if as_json:
        click.echo(json.dumps(summary, indent=2))
    else:
        for r in summary["results"]:
            style = {"pass": "green", "fail": "red", "error": "red"}[r["status"]]
            out.print(f"{safe(r['cluster']):<12} {safe(r['check']):<22} [{style}]{r['status']}[/] "
                      f"{safe(r['reason'] or '')}")
        out.print(safe(f"nightly run {summary['run']}: {summary['clusters']} clusters, "
                       f"{summary['findings']} finding(s)"))
    sys.exit(1 if summary["findings"] else 0)


@main.command("report")
@click.argument("batch_ref", metavar="BATCH_ID")
@click.option("--html", "html_out", required=True, type=click.Path(dir_okay=False),
              help="write the report to this file (one self-contained HTML file)")
def report(batch_ref: str, html_out: str) -> None:
    """Write the report of BATCH_ID (an id or a unique prefix) from the store: per cluster, the
    timeline of steps and phases, checks and decisions, checkpoints, and plots around the switchover."""
    from bgqueue.adapters.runtime import get_runtime
    from bgqueue.app.report import write_batch_report

    path = write_batch_report(get_runtime().store, batch_ref, html_out)
    out.print(f"report: {safe(path)}", highlight=False)


# --- sandbox -------------------------------------------------------------------------


@main.group(cls=_Group)
def sandbox() -> None:
    """A local fleet: redis-server and blue/green MariaDB or MySQL pairs that outlive the command."""


_FLAVOUR = click.option("--flavour", type=click.Choice(["mariadb", "mysql"]), default="mariadb", show_default=True,
                        help="the pairs' server: MariaDB, or Oracle MySQL (fetched by scripts/fetch-mysql.sh)")


@sandbox.command("up")
@click.option("--clusters", type=click.IntRange(1, 64), default=4, show_default=True, help="blue/green pairs to start")
@click.option("--dir", "directory", type=click.Path(file_okay=False), default=".sandbox", show_default=True,
              help="the sandbox's directory (servers, fleet.yaml, sandbox.env, store)")
@_FLAVOUR
def sandbox_up(clusters: int, directory: str, flavour: str) -> None:
    """Start a local fleet (blue/green pairs, redis-server) that outlives the command."""
    from bgqueue.adapters.logs import mask
    from bgqueue.sandbox import Sandbox

    t0 = time.perf_counter()
    sb = Sandbox(Path(directory), clusters=clusters, detach=True, flavour=flavour)
    sb.up()
    out.print(f"sandbox up in {time.perf_counter() - t0:.2f}s: {clusters} {flavour} cluster{'s' if clusters != 1 else ''}, "
              f"redis {safe(mask(sb.info['redis']['url']))}")
    out.print(f"fleet file: {safe(Path(directory) / 'fleet.yaml')}")
    out.print(f"credentials: source {safe(Path(directory) / 'sandbox.env')}")


@sandbox.command("down")
@click.option("--dir", "directory", type=click.Path(file_okay=False), default=".sandbox", show_default=True, help="the sandbox's directory")
@click.option("--keep-store", is_flag=True, help="keep the sandbox's store (DIR/bgqueue.sqlite): status and report "
                                                  "still know its batches")
def sandbox_down(directory: str, keep_store: bool) -> None:
    """Stop the sandbox's servers and remove its files (the store too, unless --keep-store)."""
    from bgqueue.sandbox import Sandbox

    Sandbox.load(Path(directory)).down(keep_store=keep_store)
    out.print(f"sandbox in {safe(directory)} stopped" + (f"; store kept in {safe(directory)}" if keep_store else ""))


# --- long-running processes ------------------------------------------------------------


@main.group(cls=_Group)
def sampler() -> None:
    """The metrics sampler (heartbeat lag, status counters, probe latency) → Redis."""


@sampler.command("run")
@click.option("--fleet", "fleet_file", type=click.Path(dir_okay=False),
              help="sample these clusters (default: every deployment in flight, from the store)")
@click.option("--shard", default=None, help="i/n: this process samples its share of the clusters")
def sampler_run(fleet_file: str | None, shard: str | None) -> None:
    """Sample every cluster in flight (lag, status counters, probe latency) into Redis, until stopped."""
    from bgqueue.adapters.runtime import get_runtime
    from bgqueue.app.sampler import run_sampler

    parsed = None
    if shard:
        try:
            i, n = (int(x) for x in shard.split("/"))
            assert 0 <= i < n
        except (ValueError, AssertionError):
            raise BadInput(f"--shard {shard!r}: expected i/n with 0 <= i < n") from None
        parsed = (i, n)
    import logging

    logging.getLogger().setLevel(logging.INFO)
    run_sampler(get_runtime(), fleet_path=fleet_file, shard=parsed)


@main.group(cls=_Group)
def cdc() -> None:
    """The built-in CDC consumer (binlog → Redis stream), following the writer across switchovers."""


@cdc.command("run")
@click.option("--fleet", "fleet_file", type=click.Path(dir_okay=False),
              help="the fleet whose binlog pipelines to run (default: the latest batch's fleet file)")
@click.option("--only", help="comma-separated cluster names")
def cdc_run(fleet_file: str | None, only: str | None) -> None:
    """Run the built-in binlog CDC consumers of the fleet's pipelines, until stopped."""
    import logging

    from bgqueue.adapters.runtime import get_runtime
    from bgqueue.app.cdc_runner import run_consumers

    logging.getLogger().setLevel(logging.INFO)
    run_consumers(get_runtime(), fleet_file, only=_only(only))


@main.command("exporter")
@click.option("--port", type=int, default=9108, show_default=True, help="TCP port of /metrics")
@click.option("--addr", default="127.0.0.1", show_default=True, help="listen address (0.0.0.0 to expose)")
def exporter_cmd(port: int, addr: str) -> None:
    """Serve Prometheus metrics (/metrics) computed from the store."""
    import signal
    import threading

    from bgqueue.adapters.runtime import get_runtime
    from bgqueue.app.exporter import serve

    serve(get_runtime().store, port, addr)
    out.print(safe(f"serving Prometheus metrics on http://{addr}:{port}/metrics"))
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        stop.wait()
    except KeyboardInterrupt:
        pass


# --- demo ----------------------------------------------------------------------------


@main.command("demo")
@click.option("--clusters", type=click.IntRange(1, 32), default=4, show_default=True, help="blue/green pairs in the demo fleet")
@click.option("--rate", type=float, default=100.0, show_default=True, help="writes per second per cluster")
@click.option("--keep", is_flag=True, help="keep the sandbox directory (logs, store)")
@click.option("--report", "report_path", type=click.Path(dir_okay=False), default="var/demo-report.html",
              show_default=True, help="where the batch's HTML report is written")
@_FLAVOUR
def demo(clusters: int, rate: float, keep: bool, report_path: str, flavour: str) -> None:
    """Switch a local sandbox fleet under continuous writes, then tear it down."""
    from bgqueue.app.demo import run_demo

    sys.exit(run_demo(clusters=clusters, rate=rate, keep=keep, console=out, report_path=report_path,
                      flavour=flavour))


main.add_command(replay_cmd)

if __name__ == "__main__":
    main()
