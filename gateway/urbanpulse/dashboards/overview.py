"""City overview: every board on a map, and the headline KPIs."""

from __future__ import annotations

from grafana_foundation_sdk.builders import common as cb
from grafana_foundation_sdk.builders import dashboard as dash
from grafana_foundation_sdk.builders import geomap
from grafana_foundation_sdk.models import common as cm
from grafana_foundation_sdk.models import dashboard as dm
from grafana_foundation_sdk.models import geomap as gm

from . import panels as p
from .headline import HEADLINE_BY_KEY
from .influxql import DATASOURCE
from .queries import points

UID = "urbanpulse-overview"

# Positions are written when the registry changes, possibly long before the dashboard's
# range, so this query has no time filter: a board stays on the map until it moves.
BOARD_POSITIONS = ('SELECT last("lat") AS "lat", last("lon") AS "lon" FROM "device_info" '
                   'GROUP BY "device_id", "district", "kind"')
BOARD_STATE = ('SELECT last("state") AS "state" FROM "device_status" WHERE $timeFilter '
               'GROUP BY "device_id"')
BOARD_AQI = ('SELECT last("aqi") AS "aqi" FROM "kpi_aqi" WHERE "level" = \'device\' '
             'AND $timeFilter GROUP BY "device_id"')

_HEADLINE_STYLE = {
    "city_aqi": (p.AQI, p.aqi_thresholds(), 0),
    "online_ratio": (p.PERCENT_UNIT, p.good_high(0.8, 0.95), 0),
    "parking_free": (p.COUNT, p.good_high(1, 10), 0),
    "traffic_flow_vph": (p.VPH, p.steps("blue"), 0),
    "lamps_faulty": (p.COUNT, p.bad_high(1, 5), 0),
    "rivers_above": (p.COUNT, p.bad_high(1, 1), 0),
}


def _marker_layer(name: str, colour_field: str, size: float, opacity: float,
                  ) -> cb.MapLayerOptions:
    return (
        cb.MapLayerOptions().type("markers").name(name)
        .location(cb.FrameGeometrySource().mode(cm.FrameGeometrySourceMode.COORDS)
                  .latitude("lat").longitude("lon"))
        .tooltip(True)
        .config({
            "showLegend": True,
            "style": {
                "color": {"field": colour_field, "fixed": "dark-green"},
                "opacity": opacity,
                "size": {"fixed": size, "max": 15, "min": 2},
                "symbol": {"fixed": "img/icons/marker/circle.svg", "mode": "fixed"},
            },
        })
    )


def board_map() -> geomap.Panel:
    state_colours = dm.ValueMap(options={
        "online": dm.ValueMappingResult(color="green", text="online", index=0),
        "offline": dm.ValueMappingResult(color="red", text="offline", index=1),
    })
    return (
        geomap.Panel()
        .title("Boards")
        .description("Every registered board at its registry position. Large circles: the "
                     "board's AQI (EPA colours, air boards); small dots: online (green) or "
                     "offline (red).")
        .datasource(DATASOURCE)
        .targets(p.targets([BOARD_POSITIONS, BOARD_STATE, BOARD_AQI], "table"))
        .with_transformation(dm.DataTransformerConfig(
            id_val="joinByField", options={"byField": "device_id", "mode": "outer"}))
        .view(geomap.MapViewConfig().id(gm.MapCenterID.FIT).zoom(12))
        .controls(geomap.ControlsOptions().show_zoom(True).mouse_wheel_zoom(True))
        .basemap(cb.MapLayerOptions().type("default").name("Basemap"))
        .layers([
            _marker_layer("AQI", "aqi", 12, 0.5),
            _marker_layer("Status", "state", 5, 1.0),
        ])
        .tooltip(geomap.TooltipOptions().mode(gm.TooltipMode.DETAILS))
        .thresholds(p.aqi_thresholds())
        .color_scheme(dash.FieldColor().mode(dm.FieldColorModeId.THRESHOLDS))
        .override_by_name("state", [dm.DynamicConfigValue(id_val="mappings",
                                                          value=[state_colours])])
        .span(16).height(14)
    )


def build() -> dash.Dashboard:
    board = p.new_dashboard(
        UID, "UrbanPulse: City overview",
        "Headline KPIs of the whole city and every board on the map.", time_from="now-6h")
    for key, (unit, thresholds, decimals) in _HEADLINE_STYLE.items():
        h = HEADLINE_BY_KEY[key]
        board = board.with_panel(p.stat_panel(h.title, h.query, unit, thresholds,
                                              description=h.description, decimals=decimals))
    board = board.with_panel(board_map())
    board = board.with_panel(p.timeseries_panel(
        "AQI by district",
        [points("kpi_aqi", ["aqi"], "district", ["district"], variables=())],
        p.AQI, description="Hourly US EPA AQI per district (max of its boards).",
        thresholds=p.aqi_thresholds(), width=8, height=14))
    return board
