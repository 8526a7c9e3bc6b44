"""`{% tracking_panels tracked_run %}`: the live chart panels of a tracked run, for any page
(the run page here, the pipeline run page there). It loads its own CSS/JS."""
import orjson
from django import template
from django.conf import settings
from django.utils.safestring import mark_safe

from r1lab.tracking import selectors

register = template.Library()


@register.inclusion_tag("tracking/_panels_inner.html", takes_context=True)
def tracking_panels(context, tracked_run, max_points: int = selectors.PAGE_MAX_POINTS, step_markers: str = ""):
    """`step_markers`: JSON [{"step", "label", "url"}] the page wants marked on every panel (see _panels.html)."""
    data = selectors.run_page_data(run=tracked_run, max_points=max_points)
    data["stale_after_s"] = settings.R1LAB_STALE_AFTER_S
    data["mode"] = "run"
    return {"tracked_run": tracked_run, "chart": data, "chart_json": json_for_script(data), "dom_id": f"run-charts-{tracked_run.pk}", "dom_id_data": f"run-charts-{tracked_run.pk}-data",
            "request": context.get("request"), "step_markers": step_markers or ""}


def json_for_script(data) -> str:
    """What `json_script` does (escape <, >, & so the JSON cannot close its <script>), with orjson:
    the run page embeds ~100k numbers and Django's encoder is the slow part of the page."""
    text = orjson.dumps(data).decode()
    return mark_safe(text.replace("<", "\\u003C").replace(">", "\\u003E").replace("&", "\\u0026"))


@register.filter
def cell(value) -> str:
    """A runs-list cell: numbers to 4 significant digits, true/false, "—" for none; config
    objects as compact JSON, cut at 80 characters (escaped by the template like any text)."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, int):
        return str(value) if abs(value) < 10**15 else f"{float(value):.4g}" if value.bit_length() < 1000 else "(huge)"
    if isinstance(value, str):
        return value if len(value) <= 80 else value[:79] + "…"
    text = orjson.dumps(value).decode()
    return text if len(text) <= 80 else text[:79] + "…"
