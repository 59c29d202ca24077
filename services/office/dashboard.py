"""HTML pages of the joint-meeting office's dashboard (联席会议办公室 工作台).

Pure functions: data in, one complete, self-contained HTML5 page out, rendered from the Jinja2
templates in ``templates/`` (``dashboard.html``, ``referral.html``, ``message.html``, with
``base.html`` and ``macros.html``) by the office's one environment (``templating.py``), which
autoescapes everything. This module only prepares the values the templates show (groups, sort
orders, the chart's geometry); it writes no HTML itself. No Nameko, no I/O, no network at run
time: inline CSS, the chart as inline SVG, and a few lines of vanilla JavaScript only to filter
the referral list as the user types (allowed by its hash in the page's CSP).

The pages only ever receive the office's metadata (who sent what kind of message to whom and
when, deadlines, non-personal facts, counts). Agency names come from the configuration
(``name_zh`` in ``AGENCIES``, ``services.config.agency_names``), passed in as ``agency_names``.
"""

from __future__ import annotations

import base64
import hashlib
import json
from datetime import datetime, timezone
from typing import Any, Iterable, Mapping

from markupsafe import Markup

from . import templating
from .formatting import (DASHBOARD_PATH, REFERRAL_PATH, duration, local_time, parse_time, referral_href,  # noqa: F401
                         to_int, yuan)

__all__ = ["render_dashboard", "render_referral", "render_not_found", "render_error", "yuan", "duration",
           "local_time", "KIND_NAMES"]

KIND_NAMES: Mapping[str, str] = {
    "clue_transfer": "线索移送",
    "copy_notice": "抄送",
    "receipt": "回执",
    "filing_decision": "立案决定",
    "reconsideration_request": "复议申请",
    "reconsideration_decision": "复议决定",
    "supervision_request": "监督申请",
    "supervision_notice": "监督通知",
    "materials_handover": "材料移交",
    "case_transfer": "案件移送",
    "prosecution_decision": "起诉决定",
    "judgment": "判决",
    "handling_result": "处理结果",
    "invoice_verification_request": "票据核验申请",
    "invoice_verification_result": "票据核验结果",
    "reward_request": "奖励申请",
    "reward_payment": "奖励发放",
    "finding_notice": "线索通报",
    "urge": "催办",
    "withdrawal": "撤回",
    "closure": "关闭",
}

# level -> (Chinese label, CSS class). Only these classes ever reach the page.
LEVELS: Mapping[str, tuple[str, str]] = {
    "warning": ("预警", "lv-warning"),
    "overdue": ("超期", "lv-overdue"),
    "urged": ("已催办", "lv-urged"),
    "escalated": ("已升级", "lv-escalated"),
    "calendar_missing": ("期限未知（缺日历）", "lv-other"),
}
# step status -> (label, CSS class).
STATUSES: Mapping[str, tuple[str, str]] = {
    "on_time": ("按时办结 on time", "closed"),
    "late": ("逾期办结 closed late", "late"),
    "ended": ("已终止 ended", "closed"),
    "open": ("未结 open", "open"),
}

SEARCH_JS = """
(function () {
  var input = document.getElementById('referral-search');
  if (!input) { return; }
  var rows = Array.prototype.slice.call(document.querySelectorAll('[data-testid="referral-row"]'));
  var none = document.getElementById('referral-no-match');
  var count = document.getElementById('referral-count');
  function apply() {
    var terms = input.value.toLowerCase().split(/\\s+/).filter(function (t) { return t.length > 0; });
    var shown = 0;
    rows.forEach(function (row) {
      var hay = row.getAttribute('data-search') || '';
      var hit = terms.every(function (t) { return hay.indexOf(t) !== -1; });
      row.hidden = !hit;
      if (hit) { shown += 1; }
    });
    if (none) { none.hidden = shown !== 0 || rows.length === 0; }
    if (count) { count.textContent = shown + ' / ' + rows.length; }
  }
  input.addEventListener('input', apply);
  apply();
})();
"""

_SCRIPT_HASH = base64.b64encode(hashlib.sha256(SEARCH_JS.encode("utf-8")).digest()).decode("ascii")
# Nothing may be loaded from anywhere: no external resource, only our own inline script.
CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src data:; "
    f"script-src 'sha256-{_SCRIPT_HASH}'; base-uri 'none'; form-action 'self'"
)


def _common(agency_names: Mapping[str, str] | None, link_as_of: str | None) -> dict:
    return {"names": dict(agency_names or {}), "kind_names": KIND_NAMES, "levels": LEVELS,
            "statuses": STATUSES, "link_as_of": link_as_of, "csp": CSP}


def agency_label(code: Any, names: Mapping[str, str]) -> str:
    """Plain text: ``公安局 public_security``; unknown codes as they are."""
    if code is None:
        return "—"
    name = names.get(str(code))
    return f"{name} {code}" if name else str(code)


# --------------------------------------------------------------------------- dashboard


def render_dashboard(*, office_name: str, as_of: str, overdue: list[dict], stats: dict, referrals: list[dict],
                     agency_names: Mapping[str, str] | None = None, link_as_of: str | None = None) -> str:
    """The office's main page: open overdue steps, on-time rates, trend chart, per-agency
    statistics, referrals. ``link_as_of``: carry this moment in the links (a past view)."""
    overdue = list(overdue or [])
    stats = dict(stats or {})
    names = dict(agency_names or {})
    trend = list(stats.get("trend") or [])
    totals = stats.get("totals") or {}
    return templating.render(
        "dashboard.html", **_common(names, link_as_of), script=Markup(SEARCH_JS), office_name=office_name,
        title=f"{office_name} · 工作台 Dashboard",
        as_of=as_of, period_from=stats.get("period_from"), period_to=stats.get("period_to"),
        overdue_groups=_overdue_groups(overdue, names), overdue_count=len(overdue),
        closed_late=to_int(totals.get("steps_late")),
        trend=trend, chart=trend_chart(trend) if trend else None,
        trend_totals={key: sum(to_int(d.get(key)) for d in trend)
                      for key in ("transfers", "steps_open_overdue", "steps_closed_late", "steps_ended_overdue")},
        stats_rows=list(stats.get("agencies") or []), totals=stats.get("totals"),
        on_time=list(stats.get("on_time") or []), notes=list(stats.get("notes") or []),
        referrals=[dict(item, search=_search_text(item, names)) for item in (referrals or [])])


def _overdue_groups(items: list[dict], names: Mapping[str, str]) -> list[dict]:
    groups: dict[str, list[dict]] = {}
    for item in items:
        groups.setdefault(str(item.get("late_agency")), []).append(item)
    for rows in groups.values():
        rows.sort(key=lambda i: (-to_int(i.get("overdue_seconds")), str(i.get("step_id"))))
    order = sorted(groups, key=lambda a: (-len(groups[a]), -max(to_int(i.get("overdue_seconds")) for i in groups[a]),
                                          a))
    return [{"agency": agency, "code": groups[agency][0].get("late_agency"),
             "label": agency_label(groups[agency][0].get("late_agency"), names), "rows": groups[agency],
             "urged": sum(1 for i in groups[agency] if i.get("level") == "urged"),
             "escalated": sum(1 for i in groups[agency] if i.get("level") == "escalated"),
             "longest": max(to_int(i.get("overdue_seconds")) for i in groups[agency])}
            for agency in order]


def _search_text(item: Mapping, names: Mapping[str, str]) -> str:
    words: list[str] = []
    for key in ("referral_id", "reference"):
        if item.get(key) is not None:
            words.append(str(item[key]))
    if item.get("opened_by") is not None:
        words.append(agency_label(item["opened_by"], names))
    for key in ("first_kind", "last_kind"):
        kind = item.get(key)
        if kind is not None:
            words.append(str(kind))
            if str(kind) in KIND_NAMES:
                words.append(KIND_NAMES[str(kind)])
    return " ".join(words).lower()


def _nice_ceiling(value: int) -> tuple[int, int]:
    """A round axis maximum >= value and its tick step (1, 2 or 5 times a power of ten)."""
    value = max(1, value)
    raw = value / 4
    magnitude = 10 ** (len(str(int(raw))) - 1) if raw >= 1 else 1
    step = magnitude
    for factor in (1, 2, 5, 10):
        step = factor * magnitude
        if step >= raw:
            break
    return -(-value // step) * step, step


# The chart's series: (trend key, CSS class, colour, label).
SERIES = (
    ("transfers", "bar-transfers", "#2f6fb5", "移送 transfers"),
    ("steps_open_overdue", "bar-open-overdue", "#c0392b", "超期未办 open and overdue"),
    ("steps_closed_late", "bar-closed-late", "#d08c1a", "逾期办结 closed late"),
)


def trend_chart(trend: list[dict]) -> dict:
    """The geometry of the trend's grouped bar chart (drawn by ``macros.html``): per day, the
    transfers, the steps due that day still open past their limit, and those closed late."""
    days = [(str(d.get("day")), d) for d in trend]
    n = len(days)
    width, height = 860, 300
    left, right, top, bottom = 56, 16, 40, 56
    plot_w, plot_h = width - left - right, height - top - bottom
    y_max, step = _nice_ceiling(max([to_int(d.get(key)) for _, d in days for key, *_ in SERIES] or [1]))
    group_w = plot_w / max(n, 1)
    bar_w = max(2.0, min(18.0, group_w * 0.26))

    def y(v: int) -> float:
        return top + plot_h - (v / y_max) * plot_h

    label = (f"趋势图 Trend chart: 每日移送、超期未办与逾期办结 transfers, open overdue and closed-late steps per day, "
             f"{days[0][0]} – {days[-1][0]}" if n else "趋势图 Trend chart: 无数据 no data")
    ticks = [{"y": f"{y(t):.1f}", "text_y": f"{y(t) + 4:.1f}", "value": t, "zero": t == 0}
             for t in range(0, y_max + 1, step)]
    bars, labels = [], []
    label_every = max(1, -(-n // 14))
    for i, (day, entry) in enumerate(days):
        cx = left + group_w * i + group_w / 2
        for position, (key, css, colour, text) in enumerate(SERIES):
            value = to_int(entry.get(key))
            top_y = y(value)
            bars.append({"css": css, "colour": colour, "day": day, "value": value,
                         "x": f"{cx + (position - 1.5) * bar_w:.1f}", "y": f"{top_y:.1f}", "width": f"{bar_w:.1f}",
                         "height": f"{top + plot_h - top_y:.1f}",
                         "title": f"{day} {text}: {value} (到期 steps due: {to_int(entry.get('steps_due'))})"})
        if i % label_every == 0:
            labels.append({"x": f"{cx:.1f}", "y": top + plot_h + 16, "day": day,
                           "short": day[5:] if len(day) == 10 else day})
    return {"width": width, "height": height, "left": left, "right_x": width - right, "top": top,
            "bottom_y": top + plot_h, "mid_y": f"{top + plot_h / 2:.1f}", "mid_x": f"{left + plot_w / 2:.1f}",
            "label": label, "ticks": ticks, "bars": bars, "labels": labels,
            "legend": [{"x": left + 190 * i, "colour": colour, "text": text}
                       for i, (_, _, colour, text) in enumerate(SERIES)]}


# --------------------------------------------------------------------------- referral page


def _fact_value(key: str, value: Any) -> str:
    if key.endswith("_fen") and isinstance(value, int) and not isinstance(value, bool):
        return f"{yuan(value)} 元"
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False, sort_keys=True)
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "—"
    return str(value)


def _ordered(events: Iterable[dict]) -> list[dict]:
    indexed = list(enumerate(events))
    floor = datetime.min.replace(tzinfo=timezone.utc)

    def key(pair: tuple[int, dict]) -> tuple:
        when = parse_time(pair[1].get("sent_at"))
        return (when is None, when or floor, pair[0])

    return [event for _, event in sorted(indexed, key=key)]


def render_referral(*, as_of: str, timeline: dict, agency_names: Mapping[str, str] | None = None,
                    link_as_of: str | None = None) -> str:
    """One referral: its messages in time order and its deadline steps."""
    timeline = dict(timeline or {})
    events = []
    for event in _ordered(list(timeline.get("events") or [])):
        facts = event.get("facts")
        events.append(dict(event, fact_list=[(str(k), _fact_value(str(k), v)) for k, v in facts.items()]
                           if isinstance(facts, Mapping) else []))
    steps = list(timeline.get("steps") or [])
    rid = timeline.get("referral_id")
    return templating.render(
        "referral.html", **_common(agency_names, link_as_of), referral_id=rid, as_of=as_of, events=events,
        steps=steps, open_steps=sum(1 for s in steps if s.get("state") == "open"),
        open_overdue=sum(1 for s in steps if s.get("state") == "open" and to_int(s.get("overdue_seconds")) > 0),
        closed_late=sum(1 for s in steps if s.get("state") == "closed" and to_int(s.get("overdue_seconds")) > 0),
        title=f"移送 Referral {rid if rid is not None else ''}")


def render_error(message: str, *, title_zh: str = "请求有误", title_en: str = "Bad request") -> str:
    """A page with one message (escaped) and a way back to the dashboard."""
    return templating.render("message.html", **_common(None, None), message=message, title_zh=title_zh,
                             title_en=title_en, title=f"{title_zh} {title_en}")


def render_not_found(message: str) -> str:
    """A 404 page with the message (escaped) and a way back to the dashboard."""
    return render_error(message, title_zh="未找到", title_en="Not found")
