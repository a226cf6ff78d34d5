"""Files the pages need, served by the app itself (no CDN): plotly.js, the tab icon, an empty base map."""

from __future__ import annotations

import logging
from pathlib import Path

from flask import (Blueprint, jsonify, send_file)



log = logging.getLogger(__name__)
bp = Blueprint("assets", __name__)

EMPTY_TOPOJSON = {"type": "Topology", "objects": {}, "arcs": []}


def plotly_js_path() -> Path:
    """plotly.min.js as shipped inside the installed plotly package."""
    import plotly
    return Path(plotly.__file__).parent / "package_data" / "plotly.min.js"


@bp.route("/assets/plotly.min.js")
def plotly_js():
    """plotly.js from the plotly package, so the map works with no internet."""
    return send_file(plotly_js_path(), mimetype="text/javascript", max_age=86400)


@bp.route("/favicon.ico")
def favicon():
    """The tab icon (browsers ask for /favicon.ico by themselves)."""
    return send_file(Path(__file__).parent / "static" / "favicon.svg", mimetype="image/svg+xml", max_age=86400)


@bp.route("/assets/topojson/<name>.json")
def topojson(name: str):
    """An empty base map for plotly's geo subplot: the counties' own polygons are the map."""
    return jsonify(EMPTY_TOPOJSON)
