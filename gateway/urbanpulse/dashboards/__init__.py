"""Grafana dashboards, alert rules and provisioning as code (grafana-foundation-sdk).

`build.artefacts()` renders everything committed under dashboards/ and deploy/grafana/;
`headline` holds the City overview's KPI queries, which the demo's live view runs too.
"""
