"""Orchestration cost of a fleet: one batch of 120 RDS clusters against the bare-AWS floor, and one of 500.

Everything real but AWS: a sandbox redis-server, a moto server (its own process, so its CPU is
reported apart from ours), N `celery worker` processes. Each source is an RDS MySQL instance in moto
with a CloudWatch alarm; the fleet's change is an engine upgrade with a new instance class.
Both batches use a status poll interval of --poll seconds (sync_poll_s, which also paces the
switchover's polling). moto makes blue/green deployments AVAILABLE at once, so each batch
waits at least one poll, for the switchover. The moto server publishes ReplicaLag for every green
as it is created (RDS does that by itself; moto never does). A warm-up batch of one cluster runs
first, unmeasured.

Measured per batch: wall time (enqueue → every deployment terminal), the CPU seconds of the
worker processes (main + prefork children, from /proc), of moto, of redis-server and of this
process (enqueue, waiting), and the broker messages (LPUSH/RPUSH on the redis-server, from INFO
commandstats). Then, with the workers stopped, the floor: the same AWS calls per cluster, in the
same order and with the same poll, from bare threads against a fresh moto seeded alike (no Celery,
no store): what moto's one-request-at-a-time CPU and the poll leave of the ratio on this machine.
Prints JSON. Targets: the 120-cluster batch's wall time ≤ 1.25 × the floor's (``ratio_to_floor_120``),
≤ 0.08 orchestration CPU-s and ≤ 5 broker messages per deployment, and a 500-cluster batch whose CPU
per deployment stays within 10 % of the 120-cluster figure (``cpu_growth_500_vs_120``). The
single-cluster batch is kept for reference. The clusters' CloudWatch evidence is off here (moto
publishes no metrics); the floor makes the calls bgqueue adds for cost (tags, one Cost Explorer read).

    python bench/fleet.py [--clusters 120] [--workers 2] [--concurrency 4] [--poll 5]

It also serves the README's walk-through: a local moto server holding the sources a fleet file
names (instances, Aurora clusters, their parameter groups, alarms, SSM settings), publishing
ReplicaLag for every green as RDS would:

    python bench/fleet.py serve-moto config/fleet.rds.example.yaml [--port 5055]
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bgqueue.sandbox import RedisServer, free_port  # noqa: E402

REGION = "us-east-1"
TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pids: list[int]) -> float:
    """utime+stime of each process, plus what its reaped children used (cutime+cstime)."""
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # gone: its time went to its parent's cutime
        total += sum(int(x) for x in fields[11:15]) / TICK
    return total


def worker_pids(workers) -> list[int]:
    return [p for w in workers for p in [w.proc.pid, *w.child_pids()]]


def pushes(r) -> int:
    stats = r.info("commandstats")
    return sum(stats.get(f"cmdstat_{c}", {}).get("calls", 0) for c in ("lpush", "rpush"))


# moto's server mode, one request at a time (its backends are not thread-safe: concurrent switchovers
# fail with "OrderedDict mutated during iteration"), in a process of its own. Served by waitress,
# which keeps HTTP/1.1 connections open as AWS's endpoints do: werkzeug's development server
# closes every connection, so each AWS call cost a TCP handshake on both sides and a new thread in
# moto. moto's per-request scan of its package directory (to tell a service name from a host) is
# done once. Neither changes what moto answers. Like RDS, which publishes green's ReplicaLag from
# the moment green exists, the server records ReplicaLag 0 for a green instance as soon as its
# blue/green deployment is created (moto itself never publishes it).
MOTO = """
import io, sys, threading
import moto.backends
from moto.cloudwatch.models import cloudwatch_backends
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
from moto.rds.models import rds_backends
from waitress import serve
modules = frozenset(moto.backends.list_of_moto_modules())
moto.backends.list_of_moto_modules = lambda: modules
app, lock, fed = DomainDispatcherApplication(create_backend_app), threading.Lock(), set()

def publish_green_lag():
    for account, regions in list(rds_backends.items()):
        for region, backend in list(regions.items()):
            for bg in list(backend.blue_green_deployments.values()):
                target = str(bg.target)
                if target in fed or ":db:" not in target:
                    continue
                fed.add(target)
                cloudwatch_backends[account][region].put_metric_data("AWS/RDS", [{
                    "MetricName": "ReplicaLag", "Value": 0.0, "Unit": "Seconds",
                    "Dimensions": [{"Name": "DBInstanceIdentifier", "Value": target.split(":")[-1]}]}])

def serial(environ, start_response):
    body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
    environ["wsgi.input"] = io.BytesIO(body)
    with lock:
        out = list(app(environ, start_response))
        if b"Action=CreateBlueGreenDeployment" in body:
            try:
                publish_green_lag()
            except Exception as e:  # the answer stands; the check then waits for a datapoint
                print(f"publish_green_lag: {e!r}", file=sys.stderr)
        return out
serve(serial, host="127.0.0.1", port=int(sys.argv[1]), threads=8, connection_limit=256, _quiet=True)
"""


def start_moto(workdir: Path, port: int | None = None, name: str = "moto") -> tuple[subprocess.Popen, str]:
    port = port or free_port()
    # moto counts every blue/green deployment's snapshots against a 1000-snapshot quota: a 500-cluster
    # batch after the others hit it (SnapshotQuotaExceeded, NO_GO); RDS's own quota is per account too.
    env = {**os.environ, "MOTO_RDS_SNAPSHOT_LIMIT": "1000000"}
    proc = subprocess.Popen([sys.executable, "-c", MOTO, str(port)], stdout=open(workdir / f"{name}.log", "wb"),
                            stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    import urllib.request

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url + "/moto-api/", timeout=1)
            return proc, url
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit("moto server did not start")


def configure(workdir: Path, redis_url: str, moto_url: str) -> dict[str, str]:
    os.environ.update({
        "BGQUEUE_HOME": str(workdir), "BGQUEUE_REDIS_URL": redis_url,
        "BGQUEUE_STORE_URL": f"sqlite:///{workdir / 'store.sqlite'}",
        "AWS_ENDPOINT_URL": moto_url, "AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench",
        "AWS_DEFAULT_REGION": REGION})
    for k in ("AWS_SESSION_TOKEN", "AWS_PROFILE"):
        os.environ.pop(k, None)
    from bgqueue.adapters.runtime import get_runtime
    from config.settings import get_settings, reset_settings_cache

    reset_settings_cache()
    get_runtime.cache_clear()
    import tasks.application

    tasks.application.configure(get_settings())
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    return env


def fleet_file(workdir: Path, tag: str, names: list[str], poll: float) -> Path:
    # The bench's moto publishes green's ReplicaLag once, when green is created: the window must reach
    # back to it even when a 500-cluster batch validates minutes later (60 s made a loaded run NO_GO).
    thresholds = {"sync_poll_s": poll, "validation_poll_s": 1, "lag_window_s": 900, "monitor_window_s": 0,
                  "sync_timeout_s": 600, "validation_timeout_s": 300}
    clusters = [{"name": n, "provider": "rds", "region": REGION, "db_instance_identifier": n,
                 "alarms": {"prefix": f"{n}-"}, "evidence": {"enabled": False},  # no CloudWatch feeding here
                 "change": {"engine_version": "8.0.36", "instance_class": "db.r6g.xlarge",
                            "parameter_group": "bench-80-new", "parameters": {"max_connections": 2000}}}
                for n in names]
    path = workdir / f"fleet-{tag}.yaml"
    path.write_text(yaml.safe_dump({"version": 1, "name": f"bench-{tag}", "defaults": {"thresholds": thresholds},
                                    "clusters": clusters}, sort_keys=False))
    return path


def run_batch(rt, path: Path, workers, redis_client, moto_pid: int, redis_pid: int, timeout: float) -> dict:
    from bgqueue.app.progress import wait_for_batch
    from tasks.batch import enqueue_fleet

    moto0, redis0, own0 = cpu_seconds([moto_pid]), cpu_seconds([redis_pid]), time.process_time()
    cpu0, msgs0, t0 = cpu_seconds(worker_pids(workers)), pushes(redis_client), time.monotonic()
    opened = enqueue_fleet(str(path))
    rows = wait_for_batch(rt, opened.batch_id, timeout=timeout, poll_s=0.1)
    wall = time.monotonic() - t0
    time.sleep(0.5)  # the chord body (summary) and the last acks
    cpu, msgs = cpu_seconds(worker_pids(workers)) - cpu0, pushes(redis_client) - msgs0
    moto_cpu = cpu_seconds([moto_pid]) - moto0
    redis_cpu, own_cpu = cpu_seconds([redis_pid]) - redis0, time.process_time() - own0
    n = len(rows)
    by_phase: dict[str, int] = {}
    for d in rows:
        by_phase[d.phase] = by_phase.get(d.phase, 0) + 1
    durations = sorted(d.switch_duration_ms for d in rows if d.switch_duration_ms is not None)
    failed = [(d.cluster, d.phase, d.reason) for d in rows if d.phase != "COMPLETED"][:3]
    return {"clusters": n, "wall_s": round(wall, 2), "by_phase": by_phase,
            "orchestration_cpu_s": round(cpu, 2), "cpu_s_per_deployment": round(cpu / n, 3),
            "broker_messages": msgs, "broker_messages_per_deployment": round(msgs / n, 1),
            "moto_cpu_s": round(moto_cpu, 2), "redis_cpu_s": round(redis_cpu, 2),
            # this process: enqueue (fleet file, preflight, locks) and waiting
            "enqueuer_cpu_s": round(own_cpu, 2),
            "switch_duration_ms_median": durations[len(durations) // 2] if durations else None,
            **({"not_completed": failed} if failed else {})}


def bare_batch(url: str, names: list[str], poll: float, threads: int, moto_pid: int) -> dict:
    """The floor: the AWS calls a deployment makes (same order, same poll), straight from ``threads``
    threads of this process: no Celery, no store, no lock, no checks' logic. What is left of a
    batch's wall time is moto's and the 5 s poll's."""
    from concurrent.futures import ThreadPoolExecutor, wait

    import boto3

    rds = boto3.client("rds", region_name=REGION, endpoint_url=url)
    cw = boto3.client("cloudwatch", region_name=REGION, endpoint_url=url)
    start, pool, later = dt.datetime.now(dt.UTC), ThreadPoolExecutor(threads), []
    done_b: list = []

    def phase_a(n: str) -> None:  # prepare, wait_for_sync, validate, switch (request)
        arn = rds.describe_db_instances(DBInstanceIdentifier=n)["DBInstances"][0]["DBInstanceArn"]
        rds.describe_blue_green_deployments(Filters=[{"Name": "source", "Values": [arn]}])
        bg_id = rds.create_blue_green_deployment(
            BlueGreenDeploymentName=f"bare-{n}", Source=arn, TargetEngineVersion="8.0.36",
            TargetDBInstanceClass="db.r6g.xlarge", TargetDBParameterGroupName="bench-80-new",
        )["BlueGreenDeployment"]["BlueGreenDeploymentIdentifier"]
        target = rds.describe_blue_green_deployments(BlueGreenDeploymentIdentifier=bg_id)["BlueGreenDeployments"][0]["Target"]
        green = rds.describe_db_instances(DBInstanceIdentifier=target.split(":")[-1])["DBInstances"][0]
        rds.add_tags_to_resource(ResourceName=target, Tags=[{"Key": "bgqueue:batch", "Value": "bare"}])
        cw.describe_alarms(AlarmNamePrefix=f"{n}-", AlarmTypes=["MetricAlarm", "CompositeAlarm"])
        now = dt.datetime.now(dt.UTC)
        cw.get_metric_statistics(Namespace="AWS/RDS", MetricName="ReplicaLag", Period=60, Statistics=["Maximum"],
                                 Dimensions=[{"Name": "DBInstanceIdentifier", "Value": green["DBInstanceIdentifier"]}],
                                 StartTime=now - dt.timedelta(seconds=60), EndTime=now)
        rds.describe_db_parameters(DBParameterGroupName="bench-80-new", Source="user")
        rds.switchover_blue_green_deployment(BlueGreenDeploymentIdentifier=bg_id, SwitchoverTimeout=300)
        timer = threading.Timer(poll, lambda: later.append(pool.submit(phase_b, n, bg_id)))
        timer.start()

    def phase_b(n: str, bg_id: str) -> None:  # switch (poll, checkpoint), migrate_cdc, monitor
        bg = rds.describe_blue_green_deployments(BlueGreenDeploymentIdentifier=bg_id)["BlueGreenDeployments"][0]
        rds.remove_tags_from_resource(ResourceName=bg["Target"], TagKeys=["bgqueue:batch"])
        rds.add_tags_to_resource(ResourceName=bg["Source"], Tags=[{"Key": "bgqueue:batch", "Value": "bare"}])
        rds.describe_events(SourceType="blue-green-deployment", SourceIdentifier=bg_id, StartTime=start)
        cw.describe_alarms(AlarmNamePrefix=f"{n}-", AlarmTypes=["MetricAlarm", "CompositeAlarm"])
        done_b.append(n)

    t0, moto0, own0 = time.monotonic(), cpu_seconds([moto_pid]), time.process_time()
    for f in wait([pool.submit(phase_a, n) for n in names]).done:
        f.result()  # a failed call fails the floor, loudly
    while len(done_b) < len(names):
        for f in later:
            if f.done() and f.exception() is not None:
                raise f.exception()
        if time.monotonic() - t0 > 600:
            raise SystemExit(f"bare floor: {len(done_b)} of {len(names)} clusters done after 600 s")
        time.sleep(0.01)
    boto3.client("ce", region_name="us-east-1", endpoint_url=url).get_cost_and_usage(  # the batch's summary
        TimePeriod={"Start": start.date().isoformat(), "End": (start + dt.timedelta(days=1)).date().isoformat()},
        Granularity="DAILY", Metrics=["UnblendedCost"], Filter={"Tags": {"Key": "bgqueue:batch", "Values": ["bare"]}},
        GroupBy=[{"Type": "TAG", "Key": "bgqueue:deployment"}])
    wall = time.monotonic() - t0
    pool.shutdown()
    return {"clusters": len(names), "wall_s": round(wall, 2), "moto_cpu_s": round(cpu_seconds([moto_pid]) - moto0, 2),
            "client_cpu_s": round(time.process_time() - own0, 2)}


def bare_floor(workdir: Path, files: dict[str, Path], names: dict[str, list[str]], poll: float, threads: int) -> dict:
    """``bare_batch`` for one cluster and for the fleet on a fresh moto seeded like the measured one."""
    proc, url = start_moto(workdir, name="moto-bare")
    try:
        for tag in ("warm", "single", "fleet"):
            seed_moto(url, str(files[tag]))
        bare_batch(url, names["warm"], poll, threads, proc.pid)
        one = bare_batch(url, names["single"], poll, threads, proc.pid)
        many = bare_batch(url, names["fleet"], poll, threads, proc.pid)  # the 500-cluster batch has no floor run
        return {"single_cluster_batch": one, "fleet_batch": many,
                "wall_ratio": round(many["wall_s"] / one["wall_s"], 2), "threads": threads}
    finally:
        proc.terminate()
        proc.wait(10)


def seed_moto(url: str, fleet_path: str) -> list[str]:
    """Create in moto the sources a fleet file names, with what its checks look at. Returns their names."""
    import boto3
    from botocore.exceptions import ClientError

    from bgqueue.model.fleet import load_fleet

    clients: dict[tuple[str, str], object] = {}

    def aws(service: str, region: str):
        if (service, region) not in clients:
            clients[service, region] = boto3.client(service, region_name=region, endpoint_url=url)
        return clients[service, region]

    def group(create, modify, **kw) -> None:
        try:
            create(**kw)
        except ClientError:  # shared by several clusters: made once
            return
        if values:
            modify(Parameters=values, **{k: v for k, v in kw.items() if k.endswith("GroupName")})

    made = []
    for spec in load_fleet(fleet_path).clusters:
        if spec.provider != "rds":
            continue
        rds, cw = aws("rds", spec.region), aws("cloudwatch", spec.region)
        values = [{"ParameterName": k, "ParameterValue": str(v), "ApplyMethod": "immediate"}
                  for k, v in spec.change.parameters.items()]
        aurora, name = spec.db_cluster_identifier is not None, spec.source_identifier
        if spec.change.parameter_group:
            group(rds.create_db_parameter_group, rds.modify_db_parameter_group, Description="bgqueue",
                  DBParameterGroupName=spec.change.parameter_group,
                  DBParameterGroupFamily="aurora-mysql8.0" if aurora else "mysql8.0")
        if spec.change.cluster_parameter_group:
            group(rds.create_db_cluster_parameter_group, rds.modify_db_cluster_parameter_group, Description="bgqueue",
                  DBClusterParameterGroupName=spec.change.cluster_parameter_group,
                  DBParameterGroupFamily="aurora-mysql8.0")
        if aurora:
            rds.create_db_cluster(DBClusterIdentifier=name, Engine="aurora-mysql", MasterUsername="admin",
                                  EngineVersion="8.0.mysql_aurora.3.05.2", MasterUserPassword="moto-not-a-secret")
            for i in (1, 2):
                rds.create_db_instance(DBInstanceIdentifier=f"{name}-{i}", DBClusterIdentifier=name,
                                       Engine="aurora-mysql", DBInstanceClass="db.r6g.large")
        else:
            rds.create_db_instance(DBInstanceIdentifier=name, Engine="mysql", EngineVersion="8.0.35",
                                   DBInstanceClass="db.r6g.large", AllocatedStorage=100, MasterUsername="admin",
                                   MasterUserPassword="moto-not-a-secret")
        if spec.alarms.prefix or spec.alarms.tag:
            alarm = f"{spec.alarms.prefix or name + '-'}cpu"
            cw.put_metric_alarm(AlarmName=alarm, MetricName="CPUUtilization", Namespace="AWS/RDS",
                                Statistic="Average", Period=60, EvaluationPeriods=1, Threshold=90,
                                ComparisonOperator="GreaterThanThreshold",
                                Tags=[{"Key": k, "Value": v} for k, v in spec.alarms.tag.items()])
            cw.set_alarm_state(AlarmName=alarm, StateValue="OK", StateReason="moto")
        if spec.app_config_parameter:
            aws("ssm", spec.region).put_parameter(Name=spec.app_config_parameter, Type="SecureString",
                                                  Value=json.dumps({"host": f"{name}.example.internal", "port": 3306}))
        made.append(name)
    return made


# What RDS publishes each minute for a healthy, quiet DB (the rds provider's evidence metrics); moto never does.
HEALTHY = {"CPUUtilization": 10.0, "FreeableMemory": 4e9, "DatabaseConnections": 5.0, "ReadLatency": 0.001,
           "WriteLatency": 0.002, "ReadIOPS": 100.0, "WriteIOPS": 50.0, "Deadlocks": 0.0}


def evidence_datapoints(kind: str, ident: str, now, values: dict | None = None) -> list[dict]:
    """PutMetricData entries of the evidence metrics of one instance (kind "db") or cluster."""
    dim = [{"Name": "DBInstanceIdentifier" if kind == "db" else "DBClusterIdentifier", "Value": ident}]
    return [{"MetricName": m, "Value": v, "Timestamp": now, "Dimensions": dim}
            for m, v in {**HEALTHY, **(values or {})}.items()]


def feed_replica_lag(url: str, region: str = REGION, *, evidence: bool = True,
                     after_switch: dict | None = None) -> int:
    """Publish replica lag 0 for every green moto holds (RDS does it each minute; moto never), and
    (``evidence``) healthy CloudWatch figures for both sides of every blue/green deployment; the
    target of a switched one gets ``after_switch`` on top (a green that is worse once it serves)."""
    import boto3

    rds = boto3.client("rds", region_name=region, endpoint_url=url)
    cw = boto3.client("cloudwatch", region_name=region, endpoint_url=url)
    data, entries = [], []
    now = dt.datetime.now(dt.UTC)
    for bg in rds.describe_blue_green_deployments()["BlueGreenDeployments"]:
        kind, ident = bg["Target"].split(":")[5:7]
        if evidence and bg["Status"] != "DELETING":
            switched = bg["Status"] == "SWITCHOVER_COMPLETED"
            entries += evidence_datapoints(kind, ident, now, after_switch if switched else None)
            if not switched:  # blue has been publishing for long (and moto reads to the second)
                blue = bg["Source"].split(":")[6]
                entries += evidence_datapoints(kind, blue, now) + evidence_datapoints(
                    kind, blue, now - dt.timedelta(seconds=60))
        if bg["Status"] not in ("PROVISIONING", "AVAILABLE"):
            continue
        if kind == "db":
            data.append(("ReplicaLag", ident))
        else:
            try:
                members = rds.describe_db_clusters(DBClusterIdentifier=ident)["DBClusters"][0]["DBClusterMembers"]
            except rds.exceptions.DBClusterNotFoundFault:  # a green deleted since (a NO_GO): nothing to feed
                continue
            data += [("AuroraBinlogReplicaLag", m["DBInstanceIdentifier"]) for m in members if m["IsClusterWriter"]]
    entries += [{"MetricName": m, "Value": 0.0, "Timestamp": now, "Unit": "Seconds",
                 "Dimensions": [{"Name": "DBInstanceIdentifier", "Value": g}]} for m, g in data]
    for i in range(0, len(entries), 500):
        cw.put_metric_data(Namespace="AWS/RDS", MetricData=entries[i:i + 500])
    return len(data)


def serve_moto(fleet_path: str, port: int) -> None:
    """A moto server with the fleet's sources, feeding replica lag, until interrupted."""
    for k, v in (("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing")):
        os.environ.setdefault(k, v)
    import signal

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # `kill` runs the finally below: moto stops too
    workdir = Path(tempfile.mkdtemp(prefix="bgqueue-moto-"))
    proc, url = start_moto(workdir, port)
    try:
        made = seed_moto(url, fleet_path)
        print(f"moto at {url} with {', '.join(made)}; in the shell that runs bgqueue and its workers:\n"
              f"  export AWS_ENDPOINT_URL={url} AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing", flush=True)
        while proc.poll() is None:
            try:
                feed_replica_lag(url)
            except Exception as e:  # noqa: BLE001 — a deployment mid-change: the next round feeds it
                print(f"feeder: {e}", file=sys.stderr)
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        proc.terminate()
        proc.wait(10)


def main() -> None:
    if sys.argv[1:2] == ["serve-moto"]:
        sp = argparse.ArgumentParser(prog="bench/fleet.py serve-moto")
        sp.add_argument("fleet")
        sp.add_argument("--port", type=int, default=5055)
        a = sp.parse_args(sys.argv[2:])
        serve_moto(a.fleet, a.port)
        return
    ap = argparse.ArgumentParser()
    ap.add_argument("--clusters", type=int, default=120)
    ap.add_argument("--large", type=int, default=500, help="clusters of the batch whose CPU per deployment is compared")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--concurrency", type=int, default=4, help="prefork children per worker process")
    ap.add_argument("--poll", type=float, default=5.0, help="sync_poll_s: the status poll interval")
    args = ap.parse_args()
    logging.getLogger("werkzeug").setLevel(logging.ERROR)

    load_at_start = os.getloadavg()  # other work on the machine shows here: it skews every figure
    workdir = Path(tempfile.mkdtemp(prefix="bgqueue-bench-fleet-"))
    redis_server = RedisServer(workdir / "redis").start()
    moto, moto_url = start_moto(workdir)
    workers, measured = [], False
    try:
        env = configure(workdir, redis_server.url, moto_url)
        import redis as redis_lib

        from bgqueue.adapters.runtime import get_runtime
        from tasks.workers import start_workers

        warm, single, many = ["warm-001"], ["single-001"], [f"c{i:03d}" for i in range(1, args.clusters + 1)]
        large = [f"l{i:03d}" for i in range(1, args.large + 1)]
        files = {tag: fleet_file(workdir, tag, names, args.poll)
                 for tag, names in (("warm", warm), ("single", single), ("fleet", many), ("large", large))}
        for path in files.values():
            seed_moto(moto_url, str(path))
        workers = start_workers(env, redis_server.url, count=args.workers, concurrency=args.concurrency,
                                logdir=workdir, prefix="bench")
        rt = get_runtime()
        r = redis_lib.Redis.from_url(redis_server.url)
        run_batch(rt, files["warm"], workers, r, moto.pid, redis_server.pid, timeout=300)
        one = run_batch(rt, files["single"], workers, r, moto.pid, redis_server.pid, timeout=300)
        fleet = run_batch(rt, files["fleet"], workers, r, moto.pid, redis_server.pid, timeout=900)
        big = run_batch(rt, files["large"], workers, r, moto.pid, redis_server.pid, timeout=1800)
        for w in workers:  # the floor runs alone
            w.stop()
        floor = bare_floor(workdir, files, {"warm": warm, "single": single, "fleet": many}, args.poll,
                           args.workers * args.concurrency)
        measured = True
        to_floor = round(fleet["wall_s"] / floor["fleet_batch"]["wall_s"], 2)
        cpu_growth = round(big["cpu_s_per_deployment"] / fleet["cpu_s_per_deployment"], 3)
        targets = {"ratio_to_floor_120": 1.25, "cpu_s_per_deployment": 0.08, "broker_messages_per_deployment": 5,
                   "fleet_500_cpu_growth": 1.10}
        print(json.dumps({
            "benchmark": "rds_fleet_orchestration",
            "poll_interval_s": args.poll, "worker_processes": args.workers, "concurrency_per_worker": args.concurrency,
            "cpus": os.cpu_count(), "load_average_at_start": [round(x, 2) for x in load_at_start],
            "fleet_batch": fleet, f"fleet_{args.large}": big,
            # the same AWS calls from bare threads against a fresh moto: what moto and the poll leave
            "bare_aws_floor": floor,
            "ratio_to_floor_120": to_floor,
            "cpu_growth_500_vs_120": cpu_growth,
            "targets": targets,
            "target_met": {
                "ratio_to_floor_120": to_floor <= targets["ratio_to_floor_120"],
                "cpu_s_per_deployment": fleet["cpu_s_per_deployment"] <= targets["cpu_s_per_deployment"],
                "broker_messages_per_deployment":
                    fleet["broker_messages_per_deployment"] <= targets["broker_messages_per_deployment"],
                "fleet_500_cpu_growth": cpu_growth <= targets["fleet_500_cpu_growth"],
                "all_completed": fleet["by_phase"] == {"COMPLETED": args.clusters}
                and big["by_phase"] == {"COMPLETED": args.large}},
            # for reference: the single-cluster batch and the old ratio against it
            "single_cluster_batch": one, "wall_ratio_to_single": round(fleet["wall_s"] / one["wall_s"], 2),
        }, indent=2))
    finally:
        for w in workers:
            w.stop()
        moto.terminate()
        moto.wait(10)
        redis_server.stop()
        if measured:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            print(f"logs kept in {workdir}", file=sys.stderr)


if __name__ == "__main__":
    main()
