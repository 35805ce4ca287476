"""The web console's own pages (beyond Django's admin screens): server statistics, CSV, monthly chart.

The figures are those of `GET /administration/stats` (same selectors, same CSV); the chart is drawn here
as SVG from the users' certificates' and the blocks' timestamps, so the page needs no script or CDN.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, time, timezone as dt_timezone

from django.contrib import admin
from django.db.models import Count, Min, Sum
from django.db.models.functions import TruncMonth
from django.http import HttpRequest, HttpResponse
from django.template.defaultfilters import filesizeformat
from django.template.response import TemplateResponse
from django.urls import URLPattern, path
from django.utils import timezone
from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe
from django.utils.translation import gettext as _

from blocks.models import Block
from organizations.administration import parse_rfc3339, server_stats_csv
from organizations.models import Organization, User
from organizations.selectors import server_stats

_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


def parse_at(raw: str) -> datetime | None:
    """`YYYY-MM-DD` (the figures at the end of that day, UTC) or an RFC 3339 date-time; None if neither."""
    raw = raw.strip()
    if _DATE.fullmatch(raw):
        try:
            day = date.fromisoformat(raw)
        except ValueError:
            return None
        return datetime.combine(day, time.max, tzinfo=dt_timezone.utc)
    return parse_rfc3339(raw)


# --- Monthly usage -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MonthPoint:
    month: date  # first day of the month
    users: int  # created by the end of the month, revoked ones included
    active_users: int  # created and not revoked by the end of the month
    data_size: int  # bytes of the blocks stored by the end of the month


def _first_of_month(moment: datetime | date) -> date:
    return date(moment.year, moment.month, 1)


def _next_month(month: date) -> date:
    return date(month.year + (month.month == 12), month.month % 12 + 1, 1)


def _per_month(queryset, field: str, value) -> dict[date, int]:
    rows = queryset.annotate(month=TruncMonth(field)).values("month").annotate(value=value).order_by()
    totals: dict[date, int] = {}
    for row in rows:
        if row["month"] is not None:
            month = _first_of_month(row["month"])
            totals[month] = totals.get(month, 0) + (row["value"] or 0)
    return totals


def monthly_usage(*, until: datetime | None = None) -> list[MonthPoint]:
    """One point per month, from the first organization's creation to `until` (default now)."""
    until = until or timezone.now()
    first = Organization.objects.aggregate(first=Min("created_on"))["first"]
    if first is None or first > until:
        return []
    created = _per_month(User.objects.filter(created_on__lte=until), "created_on", Count("pk"))
    revoked = _per_month(User.objects.filter(revoked_on__lte=until), "revoked_on", Count("pk"))
    stored = _per_month(Block.objects.filter(created_on__lte=until), "created_on", Sum("size"))
    points: list[MonthPoint] = []
    users = revoked_users = data_size = 0
    month, last = _first_of_month(first), _first_of_month(until)
    if month == last:
        # A line needs two points: the month before the first organization, empty.
        month = date(month.year - (month.month == 1), (month.month - 2) % 12 + 1, 1)
    while month <= last:
        users += created.get(month, 0)
        revoked_users += revoked.get(month, 0)
        data_size += stored.get(month, 0)
        points.append(MonthPoint(month=month, users=users, active_users=users - revoked_users, data_size=data_size))
        month = _next_month(month)
    return points


# --- SVG chart ---------------------------------------------------------------------------------------------------

_WIDTH, _HEIGHT = 760, 300
_LEFT, _RIGHT, _TOP, _BOTTOM = 56, 84, 36, 40
_SERIES = (
    # (attribute, colour, dashed, right axis)
    ("users", "#417690", False, False),
    ("active_users", "#2e7d32", True, False),
    ("data_size", "#c0392b", False, True),
)


def _nice_ceiling(value: int) -> int:
    """1, 2, 5 × 10^n at or above `value` (at least 1): round axis maxima."""
    if value <= 1:
        return 1
    magnitude = 10 ** (len(str(int(value))) - 1)
    for step in (1, 2, 5, 10):
        if step * magnitude >= value:
            return step * magnitude
    return 10 * magnitude


def usage_chart_svg(points: list[MonthPoint]) -> SafeString:
    """Users and active users (left axis) and stored data (right axis) per month, as inline SVG."""
    labels = {"users": _("Users"), "active_users": _("Active users"), "data_size": _("Stored data")}
    title = escape(_("Users, active users and stored data per month"))
    if not points:
        return mark_safe(
            f'<svg xmlns="http://www.w3.org/2000/svg" role="img" width="{_WIDTH}" height="60" class="usage-chart">'
            f"<title>{title}</title><text x=\"10\" y=\"30\">{escape(_('No data yet.'))}</text></svg>"
        )
    plot_width = _WIDTH - _LEFT - _RIGHT
    plot_height = _HEIGHT - _TOP - _BOTTOM
    users_max = _nice_ceiling(max(point.users for point in points))
    data_max = _nice_ceiling(max(point.data_size for point in points))

    def x(index: int) -> float:
        return _LEFT + (plot_width * index / (len(points) - 1) if len(points) > 1 else plot_width / 2)

    def y(value: int, maximum: int) -> float:
        return _TOP + plot_height - plot_height * value / maximum

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" role="img" viewBox="0 0 {_WIDTH} {_HEIGHT}" width="{_WIDTH}" '
        f'height="{_HEIGHT}" class="usage-chart" font-family="sans-serif" font-size="11">',
        f"<title>{title}</title>",
        f'<rect x="{_LEFT}" y="{_TOP}" width="{plot_width}" height="{plot_height}" fill="none" stroke="#ccc"/>',
    ]
    for fraction in (0, 0.5, 1):
        line_y = _TOP + plot_height * (1 - fraction)
        parts.append(f'<line x1="{_LEFT}" x2="{_LEFT + plot_width}" y1="{line_y:.1f}" y2="{line_y:.1f}" '
                     'stroke="#eee"/>')
        parts.append(f'<text x="{_LEFT - 6}" y="{line_y + 4:.1f}" text-anchor="end">{users_max * fraction:g}</text>')
        size = escape(filesizeformat(int(data_max * fraction)))
        parts.append(f'<text x="{_LEFT + plot_width + 6}" y="{line_y + 4:.1f}">{size}</text>')
    label_every = max(1, len(points) // 8)
    for index, point in enumerate(points):
        if index % label_every == 0 or index == len(points) - 1:
            parts.append(f'<text x="{x(index):.1f}" y="{_HEIGHT - _BOTTOM + 16}" text-anchor="middle">'
                         f"{point.month:%Y-%m}</text>")
    for attribute, colour, dashed, right in _SERIES:
        maximum = data_max if right else users_max
        coordinates = " ".join(f"{x(i):.1f},{y(getattr(p, attribute), maximum):.1f}" for i, p in enumerate(points))
        dash = ' stroke-dasharray="6 3"' if dashed else ""
        parts.append(f'<polyline class="series-{attribute}" fill="none" stroke="{colour}" stroke-width="2"{dash} '
                     f'points="{coordinates}"/>')
        for i, p in enumerate(points):
            parts.append(f'<circle cx="{x(i):.1f}" cy="{y(getattr(p, attribute), maximum):.1f}" r="2.5" '
                         f'fill="{colour}"/>')
    legend_x = _LEFT
    for attribute, colour, _dashed, _right in _SERIES:
        label = escape(labels[attribute])
        parts.append(f'<rect x="{legend_x}" y="10" width="14" height="4" fill="{colour}"/>'
                     f'<text x="{legend_x + 18}" y="16">{label}</text>')
        legend_x += 30 + 7 * len(labels[attribute])
    parts.append("</svg>")
    # Built from numbers, dates and escaped translations only.
    return mark_safe("".join(parts))


# --- The statistics page -----------------------------------------------------------------------------------------


def stats_view(request: HttpRequest) -> HttpResponse:
    raw_at = request.GET.get("at", "").strip()
    at = None
    error = None
    if raw_at:
        at = parse_at(raw_at)
        if at is None:
            error = _("Invalid date %(value)s: expected YYYY-MM-DD or an RFC 3339 date and time.") % {"value": raw_at}
    if request.GET.get("format") == "csv":
        if error is not None:
            return HttpResponse(error, status=400, content_type="text/plain; charset=utf-8")
        moment = at or timezone.now()
        response = HttpResponse(server_stats_csv(server_stats(at=at)), content_type="text/csv")
        response["Content-Disposition"] = f'attachment; filename="parsec-stats-{moment:%Y-%m-%d}.csv"'
        return response

    all_stats = server_stats(at=at) if error is None else []
    totals = {
        "organizations": len(all_stats),
        "users": sum(stats.users for stats in all_stats),
        "active_users": sum(stats.active_users for stats in all_stats),
        "realms": sum(stats.realms for stats in all_stats),
        "data_size": sum(stats.data_size for stats in all_stats),
        "metadata_size": sum(stats.metadata_size for stats in all_stats),
    }
    context = {
        **admin.site.each_context(request),
        "title": _("Server statistics"),
        "at": raw_at if error is None else "",
        "at_value": raw_at,
        "error": error,
        "moment": at or timezone.now(),
        "all_stats": all_stats,
        "totals": totals,
        "chart": usage_chart_svg(monthly_usage(until=at)) if error is None else "",
    }
    return TemplateResponse(request, "admin/console_stats.html", context, status=400 if error else 200)


def console_urlpatterns(prefix: str) -> list[URLPattern]:
    """Our pages under the console's prefix, behind the admin's login (staff only)."""
    return [path(f"{prefix}stats/", admin.site.admin_view(stats_view), name="console-stats")]
