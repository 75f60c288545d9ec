"""Parameter drift: global variables of blue and green compared, with what matters flagged.

- Differences expected between any two servers (identity, paths, positions) are ignored.
- Behaviour-changing variables (sql_mode, character sets, time_zone, …) that differ fail the
  check unless the change declares the new value in ``change.parameters`` — and if it does,
  green must actually have that value.
- Every other difference is reported as evidence, not as a failure.
"""
from __future__ import annotations

from bgqueue.checks.context import CheckContext
from bgqueue.model.results import CheckResult, failed, passed

IGNORED = frozenset({
    "server_id", "server_uuid", "read_only", "super_read_only", "hostname", "port", "socket", "datadir",
    "pid_file", "log_error", "log_bin_basename", "log_bin_index", "relay_log", "relay_log_basename",
    "relay_log_index", "relay_log_info_file", "general_log_file", "slow_query_log_file", "tmpdir",
    "gtid_binlog_pos", "gtid_binlog_state", "gtid_current_pos", "gtid_slave_pos", "gtid_executed",
    "gtid_purged", "gtid_domain_id", "report_host", "report_port", "bind_address", "timestamp",
    "innodb_data_home_dir", "innodb_log_group_home_dir", "plugin_dir", "secure_file_priv",
    "server_audit_file_path", "wsrep_node_name", "wsrep_node_address", "system_time_zone",
    "log_bin", "log_slave_updates", "log_replica_updates",  # checked by reverse_readiness
    "event_scheduler",  # its own check
})

# Variables whose difference changes what queries do or return.
BEHAVIOUR_CHANGING = frozenset({
    "sql_mode", "character_set_server", "collation_server", "character_set_database", "collation_database",
    "character_set_client", "character_set_connection", "character_set_results", "collation_connection",
    "time_zone", "explicit_defaults_for_timestamp", "lower_case_table_names", "transaction_isolation",
    "tx_isolation", "default_storage_engine", "default_tmp_storage_engine", "innodb_strict_mode",
    "sql_require_primary_key", "auto_increment_increment", "auto_increment_offset", "binlog_format",
    "binlog_row_image", "group_concat_max_len", "max_allowed_packet", "default_week_format",
    "div_precision_increment", "autocommit", "foreign_key_checks", "unique_checks", "innodb_autoinc_lock_mode",
    "optimizer_switch", "sql_safe_updates", "log_bin_trust_function_creators", "default_authentication_plugin",
    "innodb_default_row_format", "block_encryption_mode", "old_passwords", "updatable_views_with_limit",
    "big_tables", "sql_auto_is_null", "lc_time_names", "default_password_lifetime", "old_mode",
    "innodb_ft_min_token_size", "ft_min_word_len", "max_sort_length",
})
# Variables that only name the build: they differ by design when the change is an engine upgrade.
VERSION_VARIABLES = frozenset({"version", "version_comment", "version_compile_machine", "version_compile_os",
                               "version_malloc_library", "version_source_revision", "version_ssl_library",
                               "innodb_version", "protocol_version"})
MAX_LISTED = 50


def _norm(v: object) -> str:
    s = str(v).strip()
    try:
        f = float(s)
        return str(int(f)) if f.is_integer() else repr(f)
    except ValueError:
        return s.upper() if s.upper() in ("ON", "OFF", "YES", "NO", "TRUE", "FALSE") else s


def _variables(server) -> dict[str, str]:
    return {str(k).lower(): "" if v is None else str(v) for k, v in server.rows("SHOW GLOBAL VARIABLES")}


def diff(blue: dict[str, str], green: dict[str, str], intended: dict[str, object],
         engine_change: bool) -> dict[str, list]:
    """Classify every difference. Pure, for tests."""
    out: dict[str, list] = {"behaviour_changing": [], "intended": [], "intended_not_applied": [], "other": [],
                            "only_blue": [], "only_green": []}
    intended = {k.lower(): v for k, v in intended.items()}
    for name in sorted(set(blue) | set(green)):
        if name in IGNORED or (engine_change and name in VERSION_VARIABLES):
            continue
        b, g = blue.get(name), green.get(name)
        if name in intended:
            entry = {"name": name, "blue": b, "green": g, "intended": str(intended[name])}
            (out["intended"] if g is not None and _norm(g) == _norm(intended[name])
             else out["intended_not_applied"]).append(entry)
            continue
        if b is None:
            out["only_green"].append(name)
        elif g is None:
            out["only_blue"].append(name)
        elif _norm(b) != _norm(g):
            entry = {"name": name, "blue": b, "green": g}
            (out["behaviour_changing"] if name in BEHAVIOUR_CHANGING else out["other"]).append(entry)
    return out


def parameter_drift(ctx: CheckContext) -> CheckResult:
    report = diff(_variables(ctx.blue), _variables(ctx.green), dict(ctx.spec.change.parameters),
                  engine_change=ctx.spec.change.engine_version is not None)
    evidence = {k: v[:MAX_LISTED] for k, v in report.items()}
    evidence["counts"] = {k: len(v) for k, v in report.items()}
    problems = [f"{d['name']} differs (blue {d['blue']!r}, green {d['green']!r}) and the change does not "
                f"declare it" for d in report["behaviour_changing"]]
    problems += [f"{d['name']}: the change declares {d['intended']!r} but green has {d['green']!r}"
                 for d in report["intended_not_applied"]]
    if problems:
        return failed("parameter_drift", "; ".join(problems), value=len(problems), threshold=0, evidence=evidence)
    return passed("parameter_drift", f"{len(report['intended'])} intended, {len(report['other'])} other differences",
                  value=0, threshold=0, evidence=evidence)
