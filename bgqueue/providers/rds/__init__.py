"""The ``rds`` provider: Amazon RDS / Aurora MySQL through the RDS Blue/Green Deployments API.

Entry points the rest of bgqueue calls (lazily, only for ``provider: rds`` clusters):
  steps.prepare / wait_for_sync / switch(rt, deployment_id) -> Next   the chain's steps
  steps.on_no_go(rt, dep)                                            remove a green environment
  steps.decommission(rt, dep) -> str                                 delete the -oldN source after retention
  checks.RDS_CHECKS: dict[str, Check]; checks.alarms_in_alarm(spec)  validation and monitoring
  preflight.check_rds_cluster(spec) -> preflight.ClusterCheck        before anything is created
  cost.check_budget(fleet, specs, fleet_path)                        refuse a batch over budget

Modules: aws (one boto3 client per service and region per process), source (what an instance or
cluster is), topology (support checks), bluegreen (the Blue/Green Deployments API and what its
statuses mean), steps / switchover / decommission (the lifecycle), checks / params (validation,
monitoring), app_config (the SSM settings), cost (prices, estimates, the budget), preflight.
Settings this package reads from the environment itself (they are not in config/settings.py):
BGQUEUE_AWS_ENDPOINT_URL, BGQUEUE_AWS_RETRIES, BGQUEUE_RDS_PRICES.
"""
