"""City KPIs (CONTRACT.md "KPI definitions", schema in /README.md "KPIs").

One module per KPI family (air with aqi, noise, parking, traffic, streetlight with sun,
water, network): its formulas, then its run step, which reads the family's telemetry through
a ``context.RunContext`` and emits ``kpi_*`` points per device, site and district.
``engine`` only orchestrates a run: which hours and local days, the families in turn, the
write; ``job`` runs it in the gateway or from ``urbanpulse kpi run``.
"""
