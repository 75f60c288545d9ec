"""What operators see: status of batches and clusters, as terminal tables or JSON-ready dicts.

Every value in a table or line comes from the store, and so from fleet files and servers: it is
printed through ``terminal.safe`` (no markup, no escape sequences); only our own styles are markup.
"""
from __future__ import annotations

import json
from datetime import UTC, datetime

from pydantic import TypeAdapter
from rich.console import Console
from rich.table import Table

from bgqueue.adapters.runtime import Runtime
from bgqueue.adapters.store import deployments as deps
from bgqueue.adapters.store import journal, validation
from bgqueue.app.replay_cmd import print_classes
from bgqueue.app.report.replay import latest_replay
from bgqueue.app.terminal import safe
from bgqueue.model.phases import SWITCHED, Phase
from bgqueue.model.routing import RoutingTarget

_TARGETS: TypeAdapter = TypeAdapter(RoutingTarget)

PHASE_STYLE = {
    "COMPLETED": "green", "MONITORING": "green", "CDC_MIGRATING": "cyan", "SWITCHING": "yellow",
    "NO_GO": "magenta", "SWITCHOVER_FAILED": "red", "FAILED": "bold red", "ROLLED_BACK": "red",
    "ROLLING_BACK": "yellow",
}


def _iso(dt: datetime | None) -> str | None:
    dt = deps.as_aware(dt)
    return dt.isoformat(timespec="milliseconds") if dt else None


def _endpoint(spec: dict, side: str, facts: dict | None = None) -> str:
    """host:port (mysql), or the RDS source identifier / green's own identifier once RDS named it (rds)."""
    if side in spec:
        return f"{spec[side]['host']}:{spec[side]['port']}"
    source = spec.get("db_instance_identifier") or spec.get("db_cluster_identifier") or "?"
    if side == "blue":
        return source
    green = ((facts or {}).get("green") or {}).get("identifier")
    return green or f"green of {source} (not created yet)"


def deployment_dict(rt: Runtime, dep, detail: bool = False) -> dict:
    out = {
        "deployment": dep.id, "batch": dep.batch_id, "cluster": dep.cluster, "provider": dep.provider,
        "phase": dep.phase, "epoch": dep.epoch, "reason": dep.reason,
        "blue": _endpoint(dep.spec, "blue", dep.facts),
        "green": _endpoint(dep.spec, "green", dep.facts),
        "blue_green_deployment": ((dep.facts or {}).get("blue_green") or {}).get("id"),
        "switch_duration_ms": dep.switch_duration_ms, "writes_blocked_ms": dep.writes_blocked_ms,
        "created_at": _iso(dep.created_at), "finished_at": _iso(dep.finished_at),
        "switched": Phase(dep.phase) in SWITCHED,
        "green_cost_per_hour": ((dep.facts or {}).get("cost") or {}).get("green_per_hour"),
        "retention_until": _iso(dep.retention_until), "decommissioned_at": _iso(dep.decommissioned_at),
    }
    if detail:
        out["phases"] = [{"from": p.from_phase, "to": p.to_phase, "at": _iso(p.at), "reason": p.reason}
                         for p in deps.phase_history(rt.store, dep.id)]
        out["steps"] = [{"procedure": s.procedure, "name": s.name, "status": s.status, "epoch": s.epoch,
                         "duration_ms": s.duration_ms, "detail": s.detail, "at": _iso(s.started_at)}
                        for s in journal.steps(rt.store, dep.id)]
        out["checkpoints"] = [{"kind": c.kind, "old_primary": c.old_primary, "new_primary": c.new_primary,
                               "old_gtid": c.old_gtid, "old_binlog": f"{c.old_binlog_file}:{c.old_binlog_pos}",
                               "new_gtid": c.new_gtid, "new_binlog": f"{c.new_binlog_file}:{c.new_binlog_pos}",
                               "captured_at": _iso(c.captured_at)}
                              for c in journal.checkpoints(rt.store, dep.id)]
        decisions = validation.decisions(rt.store, dep.id)
        out["decisions"] = [{"kind": d.kind, "round": d.round, "verdict": d.verdict, "reasons": d.reasons,
                             "at": _iso(d.at)} for d in decisions[-5:]]
        results = validation.check_results(rt.store, dep.id)
        out["checks"] = [{"name": c.name, "status": c.status, "retryable": c.retryable, "value": c.value,
                          "threshold": c.threshold, "reason": c.reason, "duration_ms": c.duration_ms,
                          "round": c.round} for c in results]
        out["replay"] = latest_replay(results)
        route = rt.routing.get(dep.cluster)
        out["route"] = None if route is None else {"writer": f"{route.host}:{route.port}", "version": route.version}
        out["paths"] = application_paths(dep.spec, out["steps"], out["route"])
    return out


def application_paths(spec: dict, steps: list[dict], route: dict | None) -> list[dict]:
    """Where each application path of the cluster points, from the journal: the registry (its
    route), then every extra target as the last flip_targets step left it (flipped to a side, or
    still on the other one with the error), or "blue (not flipped)" before any flip."""
    out = [{"path": "registry", "points_at": route["writer"] if route else "no route", "ok": route is not None}]
    last = next((s for s in reversed(steps) if s["name"] == "flip_targets"), None)
    detail = (last or {}).get("detail") or {}
    side = detail.get("side")
    for raw in spec.get("routing") or []:
        try:
            target = _TARGETS.validate_python(raw)
        except ValueError:
            continue
        if target.kind == "registry":
            continue
        label = target.label
        if label in (detail.get("flipped") or {}):
            out.append({"path": label, "points_at": side, "ok": True})
        elif label in (detail.get("failed") or {}):
            other = "blue" if side == "green" else "green"
            out.append({"path": label, "points_at": f"{other} (old primary)", "ok": False,
                        "error": detail["failed"][label]})
        else:
            out.append({"path": label, "points_at": "blue (not flipped)", "ok": True})
    return out


def batch_dict(rt: Runtime, batch_id: str) -> dict:
    b = deps.get_batch(rt.store, batch_id)
    rows = [deployment_dict(rt, d) for d in deps.batch_deployments(rt.store, batch_id)]
    coexisting = [r["green_cost_per_hour"] for r in rows
                  if r["green_cost_per_hour"] and r["phase"] not in ("NO_GO", "ROLLED_BACK")]
    return {"batch": b.id, "fleet": b.fleet_name, "status": b.status, "requested_by": b.requested_by,
            "created_at": _iso(b.created_at), "finished_at": _iso(b.finished_at),
            "green_cost_per_hour": round(sum(coexisting), 4) if coexisting else None,
            "total": len(rows), "switched": sum(r["switched"] for r in rows),
            "ok": bool(rows) and all(r["switched"] for r in rows), "clusters": rows}


def deployments_table(rows: list[dict], title: str) -> Table:
    t = Table(title=title, title_justify="left")
    for col in ("cluster", "phase", "switch ms", "writes blocked ms", "green $/h", "reason"):
        t.add_column(col, overflow="fold")
    for r in rows:
        style = PHASE_STYLE.get(r["phase"], "")
        cost = f"{r['green_cost_per_hour']:.2f}" if r.get("green_cost_per_hour") else ""
        t.add_row(safe(r["cluster"]), f"[{style}]{safe(r['phase'])}[/]" if style else safe(r["phase"]),
                  _num(r["switch_duration_ms"]), _num(r["writes_blocked_ms"]), cost, safe(r["reason"] or ""))
    return t


def print_batch(console: Console, data: dict) -> None:
    cost = f", green environments ${data['green_cost_per_hour']:.2f}/h" if data.get("green_cost_per_hour") else ""
    state = "done" if data.get("finished_at") else "running"
    counts: dict[str, int] = {}
    for r in data["clusters"]:
        counts[r["phase"]] = counts.get(r["phase"], 0) + 1
    by_phase = ", ".join(f"{n} {p}" for p, n in sorted(counts.items()))
    console.print(deployments_table(data["clusters"], safe(
        f"batch {data['batch']} ({data['fleet']}): {state}, {_age(data.get('created_at'))} old; "
        f"{data['switched']}/{data['total']} switched ({by_phase}){cost}")))


def _age(iso: str | None) -> str:
    if not iso:
        return "?"
    then = datetime.fromisoformat(iso)
    if then.tzinfo is None:
        then = then.replace(tzinfo=UTC)
    s = max(0.0, (datetime.now(UTC) - then).total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if s >= size:
            return f"{s / size:.0f} {unit}"
    return f"{s:.0f} s"


def print_deployment(console: Console, d: dict) -> None:
    console.print(f"[bold]{safe(d['cluster'])}[/]  deployment {safe(d['deployment'])}  batch {safe(d['batch'])}")
    console.print(f"phase [bold]{safe(d['phase'])}[/]  epoch {d['epoch']}  "
                  + safe(f"blue {d['blue']}  green {d['green']}"
                         + (f"  route → {d['route']['writer']} (v{d['route']['version']})" if d.get("route") else "")))
    if d["reason"]:
        console.print(f"reason: {safe(d['reason'])}")
    for p in d.get("paths", []):
        mark = "" if p["ok"] else "[red]STILL ON THE OLD PRIMARY[/] "
        console.print(f"path {safe(p['path'])} → {mark}{safe(p['points_at'])}"
                      + (f": {safe(p['error'][:200])}" if p.get("error") else ""))
    if d.get("blue_green_deployment"):
        console.print(safe(f"RDS blue/green deployment {d['blue_green_deployment']}"))
    if d.get("decommissioned_at"):
        console.print(safe(f"old primary {d['blue']}: decommissioned at {d['decommissioned_at']} — free"))
    elif d.get("retention_until") and d["phase"] == "COMPLETED" and d["provider"] == "rds":
        console.print(safe(f"old environment of {d['blue']} (renamed -old1 by RDS): kept until {d['retention_until']}, "
                           "then deleted; rollback is a blue/green deployment back (not after an engine upgrade or "
                           "grown storage: the old environment does not replicate from the new one)"))
    elif d.get("retention_until") and d["phase"] == "COMPLETED":
        console.print(safe(f"old primary {d['blue']}: reverse replica (rollback possible) until {d['retention_until']}"))
    if d.get("checks"):
        t = Table(title=f"checks (round {d['checks'][0]['round']})", title_justify="left")
        for col in ("check", "status", "value", "threshold", "reason"):
            t.add_column(col, overflow="fold")
        for c in d["checks"]:
            style = {"pass": "green", "fail": "red", "error": "red", "wait": "yellow"}.get(c["status"], "")
            t.add_row(safe(c["name"]), f"[{style}]{safe(c['status'])}[/]", safe(c["value"] or ""),
                      safe(c["threshold"] or ""), safe((c["reason"] or "")[:300]))
        console.print(t)
    if d.get("replay"):
        print_classes(console, d["replay"])
    latest: dict[str, dict] = {}
    for dec in d.get("decisions", []):
        latest[dec["kind"]] = dec  # the last decision of each kind: the gate's GO and the monitor's HOLD
    for kind, dec in latest.items():
        label = DECISION_LABEL.get(kind, kind)
        console.print(f"{safe(label)} (round {dec['round']}): [bold]{safe(dec['verdict'])}[/]"
                      + "".join(f"\n  - {safe(r)}" for r in dec["reasons"] or []))
    t = Table(title="journal", title_justify="left")
    for col in ("procedure", "step", "status", "ms", "detail"):
        t.add_column(col, overflow="fold")
    for s in d.get("steps", []):
        t.add_row(safe(s["procedure"]), safe(s["name"]), safe(s["status"]), _num(s["duration_ms"]),
                  safe(readable(s["detail"])))
    console.print(t)
    for c in d.get("checkpoints", []):
        console.print(safe(f"checkpoint ({c['kind']}): {c['old_primary']} final gtid {c['old_gtid']} binlog "
                           f"{c['old_binlog']} → {c['new_primary']} binlog {c['new_binlog']}"))


DECISION_LABEL = {"pre_switch": "decision before the switchover", "monitor": "monitoring window's decision",
                  "rollback": "rollback decision"}


def readable(detail: dict | None, limit: int = 600) -> str:
    """A journal step's facts, one ``key: value`` per line (nested values compact), cut at whole
    entries with a count of what was left out (``status --json`` has everything)."""
    if not detail:
        return ""
    lines, used = [], 0
    items = list(detail.items())
    for i, (k, v) in enumerate(items):
        text = json.dumps(v, default=str, sort_keys=True) if isinstance(v, (dict, list)) else str(v)
        line = f"{k}: {text if len(text) <= 200 else text[:197] + '...'}"
        if used + len(line) > limit and lines:
            lines.append(f"(+{len(items) - i} more: status --json)")
            break
        lines.append(line)
        used += len(line)
    return "\n".join(lines)


def _num(v: float | None) -> str:
    return "" if v is None else f"{v:.1f}"
