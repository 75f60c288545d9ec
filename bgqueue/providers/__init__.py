"""Providers: how a cluster's blue and green are reached and switched (mysql: SQL; rds: the RDS API)."""
