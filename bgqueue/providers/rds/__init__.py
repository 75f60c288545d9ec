"""The ``rds`` provider: Amazon RDS / Aurora MySQL through the RDS Blue/Green Deployments API.

Entry points the rest of bgqueue calls (lazily, only for ``provider: rds`` clusters):
  steps.prepare / wait_for_sync / switch(rt, deployment_id) -> Next   the chain's steps
  steps.on_no_go(rt, dep)                                            remove a green environment
  steps.decommission(rt, dep) -> str                                 delete the -oldN source after retention
  checks.RDS_CHECKS: dict[str, Check]; checks.alarms_in_alarm(spec)  validation and monitoring
  preflight.check_rds_cluster(spec) -> preflight.ClusterCheck        before anything is created
  cost.check_budget(fleet, specs, fleet_path)                        refuse a batch over budget
"""
