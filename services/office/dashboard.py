"""HTML pages of the joint-meeting office's dashboard (联席会议办公室 工作台).

Pure functions: data in, one complete, self-contained HTML5 page out. No Nameko, no I/O, no
network at run time: inline CSS, charts drawn here as inline SVG, and a few lines of vanilla
JavaScript only to filter the referral list as the user types.

Every value that comes from the data is escaped with ``html.escape`` (also numbers, also in
attributes and in the SVG). The pages only ever receive the office's metadata (who sent what
kind of message to whom and when, deadlines, non-personal facts, counts); they add nothing else.

Times arrive as RFC 3339 UTC strings (``YYYY-MM-DDTHH:MM:SSZ``) and are shown in Asia/Shanghai
local time as ``YYYY-MM-DD HH:MM``. Money arrives as integer fen and is shown in yuan with two
decimals, computed with integer arithmetic. ``completion_rate`` is a fraction (0.74 is 74%).
"""

from __future__ import annotations

import base64
import hashlib
import json
from datetime import datetime, timedelta, timezone
from html import escape
from typing import Any, Iterable, Mapping
from urllib.parse import quote

from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

try:
    LOCAL_TZ: Any = ZoneInfo("Asia/Shanghai")
except ZoneInfoNotFoundError:  # pragma: no cover - no tz database; China has no DST since 1991
    LOCAL_TZ = timezone(timedelta(hours=8), "CST")

__all__ = ["render_dashboard", "render_referral", "render_not_found", "AGENCY_NAMES", "yuan"]

DASHBOARD_PATH = "/dashboard"
REFERRAL_PATH = "/dashboard/referrals/"

AGENCY_NAMES: Mapping[str, str] = {
    "medical_security": "医疗保障局",
    "public_security": "公安局",
    "procuratorate": "人民检察院",
    "court": "人民法院",
    "health": "卫生健康委",
    "finance": "财政局",
    "joint_office": "联席会议办公室",
}

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
}
_LEVEL_RANK = {"warning": 0, "overdue": 1, "urged": 2, "escalated": 3}


# --------------------------------------------------------------------------- formatting


def _e(value: Any) -> str:
    """Escape any value for HTML text or a quoted attribute; None becomes an em dash."""
    if value is None:
        return "—"
    return escape(str(value), quote=True)


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00") if value.endswith("Z") else value)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed


def local_time(value: Any) -> str:
    """``2025-03-01T02:00:00Z`` -> ``2025-03-01 10:00`` (Asia/Shanghai). Unparseable: as given."""
    parsed = _parse_time(value)
    if parsed is None:
        return "—" if value is None else str(value)
    return parsed.astimezone(LOCAL_TZ).strftime("%Y-%m-%d %H:%M")


def _time(value: Any) -> str:
    """A <time> element showing local time, with the original UTC string as machine value."""
    if value is None or value == "":
        return '<span class="muted">—</span>'
    if _parse_time(value) is None:
        return _e(value)
    return f'<time datetime="{_e(value)}" title="{_e(value)}">{_e(local_time(value))}</time>'


def _period_value(value: Any) -> str:
    # A bare date stays a date; a timestamp is shown in local time.
    if isinstance(value, str) and len(value) == 10:
        return _e(value)
    return _time(value)


def yuan(fen: Any) -> str:
    """Integer fen -> yuan with thousands separators and exactly two decimals, no floats.

    >>> yuan(128645000)
    '1,286,450.00'
    """
    if isinstance(fen, bool) or not isinstance(fen, (int, str)):
        return "—" if fen is None else str(fen)
    try:
        amount = int(fen)
    except ValueError:
        return str(fen)
    sign = "-" if amount < 0 else ""
    whole, cents = divmod(abs(amount), 100)
    return f"{sign}{whole:,}.{cents:02d}"


def duration(seconds: Any) -> str:
    """Human-readable duration: ``2d 3h``, ``5h 12m``, ``12m``, ``<1m``, ``0``."""
    if seconds is None or isinstance(seconds, bool):
        return "—"
    try:
        total = int(round(float(seconds)))
    except (TypeError, ValueError):
        return str(seconds)
    if total == 0:
        return "0"
    sign = "-" if total < 0 else ""
    total = abs(total)
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes = rest // 60
    if days:
        text = f"{days}d {hours}h" if hours else f"{days}d"
    elif hours:
        text = f"{hours}h {minutes}m" if minutes else f"{hours}h"
    elif minutes:
        text = f"{minutes}m"
    else:
        text = "<1m"
    return sign + text


def _duration_html(seconds: Any) -> str:
    text = duration(seconds)
    if text == "—":
        return '<span class="muted">—</span>'
    return f'<span title="{_e(seconds)} s">{_e(text)}</span>'


def _percent(rate: Any) -> str:
    if rate is None or isinstance(rate, bool):
        return '<span class="muted">—</span>'
    try:
        value = float(rate) * 100
    except (TypeError, ValueError):
        return _e(rate)
    return _e(f"{value:.1f}%")


def _int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


def agency_name(code: Any) -> str:
    """Plain text: ``公安局 public_security``; unknown codes as-is."""
    if code is None:
        return "—"
    name = AGENCY_NAMES.get(str(code))
    return f"{name} {code}" if name else str(code)


def _named(code: Any, names: Mapping[str, str], css: str) -> str:
    """A code with its Chinese name (``公安局 public_security``); unknown codes as-is."""
    if code is None:
        return '<span class="muted">—</span>'
    name = names.get(str(code))
    if name is None:
        return f'<span class="{css}">{_e(code)}</span>'
    return f'<span class="{css}">{_e(name)} <span class="code">{_e(code)}</span></span>'


def _agency(code: Any) -> str:
    return _named(code, AGENCY_NAMES, "agency")


def _kind(kind: Any) -> str:
    return _named(kind, KIND_NAMES, "kind")


def _level_badge(level: Any) -> str:
    if level is None:
        return '<span class="muted">—</span>'
    label, css = LEVELS.get(str(level), (None, "lv-other"))
    text = f"{label} {level}" if label else str(level)
    return f'<span class="badge {css}">{_e(text)}</span>'


def referral_href(referral_id: Any) -> str:
    return REFERRAL_PATH + quote(str(referral_id), safe="")


def _referral_link(referral_id: Any) -> str:
    return f'<a class="ref-link mono" href="{_e(referral_href(referral_id))}">{_e(referral_id)}</a>'


def _num(value: Any, *, alert: bool = False) -> str:
    n = _int(value) if value is not None else None
    if n is None:
        return '<span class="muted">—</span>'
    css = ' class="alert"' if alert and n > 0 else ""
    return f"<span{css}>{_e(n)}</span>"


# --------------------------------------------------------------------------- page frame

_CSS = """
:root{--ink:#1f2933;--muted:#6b7785;--line:#d9dee5;--bg:#f4f6f9;--card:#fff;--accent:#1d4e89;
--blue:#2f6fb5;--red:#c0392b;--amber:#b7791f;--green:#2f855a;--purple:#6b46c1}
*{box-sizing:border-box}
[hidden]{display:none!important}
html{font-size:15px}
body{margin:0;background:var(--bg);color:var(--ink);line-height:1.45;
font-family:system-ui,-apple-system,"Segoe UI","Noto Sans CJK SC","Noto Sans SC","PingFang SC",
"Microsoft YaHei","WenQuanYi Micro Hei",sans-serif}
header.top{background:var(--accent);color:#fff;padding:14px 24px}
header.top h1{margin:0;font-size:1.35rem;font-weight:600}
header.top .sub{margin-top:4px;opacity:.9;font-size:.9rem}
header.top a{color:#fff}
header.top .en{color:#c9d8ec}
header.top form.logout{float:right;margin:2px 0 0 16px}
header.top form.logout button{padding:4px 12px;font-size:.85rem;color:#fff;background:transparent;
border:1px solid #c9d8ec;border-radius:6px;cursor:pointer}
main{max-width:1600px;margin:0 auto;padding:16px 24px 40px}
section.card{background:var(--card);border:1px solid var(--line);border-radius:8px;
padding:14px 18px 18px;margin:16px 0}
section.card h2{margin:0 0 10px;font-size:1.1rem;color:var(--accent)}
section.card h3{margin:14px 0 6px;font-size:.95rem}
.en{color:var(--muted);font-weight:400}
.muted{color:var(--muted)}
.code,.mono{font-family:ui-monospace,"DejaVu Sans Mono",Menlo,Consolas,monospace;font-size:.82em}
.code{color:var(--muted)}
.scroll{overflow-x:auto}
table{border-collapse:collapse;width:100%;font-size:.88rem}
th,td{border-bottom:1px solid var(--line);padding:5px 8px;text-align:left;vertical-align:top}
thead th{background:#eef2f7;font-weight:600;white-space:nowrap}
thead th .en{display:block;font-size:.78rem}
td.n,th.n{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
td time,.ref-link{white-space:nowrap}
table.dense{font-size:.82rem}
table.dense th,table.dense td{padding:4px 5px}
tr.group th{background:#f8f0ef;color:var(--red);font-weight:600;text-align:left}
tfoot td,tfoot th{font-weight:700;background:#eef2f7;border-top:2px solid var(--accent)}
.alert{color:var(--red);font-weight:600}
.badge{display:inline-block;border-radius:10px;padding:1px 8px;font-size:.78rem;white-space:nowrap;
border:1px solid transparent}
.lv-warning{background:#fff7e0;color:var(--amber);border-color:#f2d58a}
.lv-overdue{background:#fdecea;color:var(--red);border-color:#f3b8b1}
.lv-urged{background:#fde8d8;color:#b45309;border-color:#f5b98a}
.lv-escalated{background:var(--red);color:#fff}
.lv-other{background:#eee;color:var(--ink)}
.ok{background:#e6f4ea;color:var(--green);border-color:#a8d5b5}
.bad{background:var(--red);color:#fff}
.sealed{background:#ece6fa;color:var(--purple);border-color:#cbbcf0}
.open{background:#e8f0fb;color:var(--blue);border-color:#b3cdee}
.closed{background:#eee;color:var(--muted)}
.tag{display:inline-block;background:#f1f3f6;border:1px solid var(--line);border-radius:4px;
padding:0 6px;margin:2px 4px 0 0;font-size:.78rem}
.tag b{font-weight:600;color:var(--muted)}
.summary{display:flex;flex-wrap:wrap;gap:10px;margin:0 0 12px;padding:0;list-style:none}
.summary li{border:1px solid var(--line);border-left:4px solid var(--red);border-radius:6px;
padding:6px 12px;background:#fff;min-width:170px}
.summary li .big{font-size:1.4rem;font-weight:700;color:var(--red)}
.summary li .small{font-size:.8rem;color:var(--muted)}
.empty{color:var(--muted);font-style:italic;margin:6px 0}
.search{display:flex;align-items:center;gap:10px;margin:0 0 10px}
.search input{flex:0 1 420px;padding:6px 10px;font-size:.95rem;border:1px solid #aab4c0;border-radius:6px}
.chart{width:100%;max-width:900px;height:auto;display:block}
.note{font-size:.8rem;color:var(--muted);margin-top:6px}
ol.timeline{list-style:none;margin:0;padding:0 0 0 14px;border-left:3px solid #c8d3e0}
ol.timeline li{position:relative;margin:0 0 12px;padding:8px 12px;background:#fafbfc;
border:1px solid var(--line);border-radius:6px}
ol.timeline li::before{content:"";position:absolute;left:-22px;top:14px;width:11px;height:11px;
border-radius:50%;background:var(--accent);border:2px solid #fff}
ol.timeline .when{font-weight:600;margin-right:10px;font-variant-numeric:tabular-nums}
ol.timeline .route{margin-right:10px}
ol.timeline .meta{font-size:.78rem;color:var(--muted);margin-top:3px}
a{color:var(--blue)}
"""

_SEARCH_JS = """
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

_SCRIPT_HASH = base64.b64encode(hashlib.sha256(_SEARCH_JS.encode("utf-8")).digest()).decode("ascii")
# Nothing may be loaded from anywhere: no external resource, only our own inline script.
_CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src data:; "
    f"script-src 'sha256-{_SCRIPT_HASH}'; base-uri 'none'; form-action 'self'"
)
# Every page can end the session (the office's POST /logout; the only form on these pages).
_LOGOUT = ('<form class="logout" method="post" action="/logout">'
           '<button type="submit" data-testid="logout">退出登录 Log out</button></form>')


def _page(title: str, header: str, body: str, *, script: bool = False) -> str:
    js = f"<script>{_SEARCH_JS}</script>\n" if script else ""
    return (
        "<!DOCTYPE html>\n"
        '<html lang="zh-CN">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f'<meta http-equiv="Content-Security-Policy" content="{_e(_CSP)}">\n'
        '<meta name="referrer" content="no-referrer">\n'
        f"<title>{_e(title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n"
        f'<header class="top">{_LOGOUT}{header}</header>\n<main>\n{body}\n</main>\n{js}</body>\n</html>\n'
    )


def _th(zh: str, en: str, *, cls: str = "", span: str = "") -> str:
    css = f' class="{cls}"' if cls else ""
    return f"<th{css}{span}>{_e(zh)} <span class=\"en\">{_e(en)}</span></th>"


# --------------------------------------------------------------------------- dashboard


def render_dashboard(
    *, office_name: str, as_of: str, overdue: list[dict], stats: dict, referrals: list[dict]
) -> str:
    """The office's main page: overdue steps, trend chart, per-agency statistics, referrals."""
    overdue = list(overdue or [])
    stats = dict(stats or {})
    referrals = list(referrals or [])
    header = (
        f"<h1>{_e(office_name)} · 工作台 <span class=\"en\">Dashboard</span></h1>"
        f'<div class="sub">截至 As of: {_time(as_of)}'
        + (
            f" · 统计期间 Period: {_period_value(stats.get('period_from'))} – "
            f"{_period_value(stats.get('period_to'))}"
            if stats.get("period_from") or stats.get("period_to")
            else ""
        )
        + " · 时间为北京时间 Times in Asia/Shanghai</div>"
    )
    body = "\n".join(
        [
            _overdue_section(overdue),
            _trend_section(list(stats.get("trend") or [])),
            _stats_section(stats),
            _referrals_section(referrals),
        ]
    )
    return _page(f"{office_name} · 工作台 Dashboard", header, body, script=True)


def _overdue_section(items: list[dict]) -> str:
    parts = ['<section class="card" id="overdue">', "<h2>超期事项 <span class=\"en\">Overdue steps</span></h2>"]
    if not items:
        parts.append('<p class="empty" data-testid="overdue-empty">当前没有超期事项 No overdue steps.</p>')
        parts.append("</section>")
        return "\n".join(parts)

    groups: dict[str, list[dict]] = {}
    for item in items:
        groups.setdefault(str(item.get("late_agency")), []).append(item)
    for rows in groups.values():
        rows.sort(key=lambda i: (-_int(i.get("overdue_seconds")), str(i.get("step_id"))))
    order = sorted(
        groups,
        key=lambda a: (-len(groups[a]), -max(_int(i.get("overdue_seconds")) for i in groups[a]), a),
    )

    # Per-agency summary.
    parts.append('<ul class="summary" data-testid="overdue-summary">')
    for agency in order:
        rows = groups[agency]
        urged = sum(1 for i in rows if i.get("level") == "urged")
        escalated = sum(1 for i in rows if i.get("level") == "escalated")
        longest = max(_int(i.get("overdue_seconds")) for i in rows)
        parts.append(
            f'<li data-testid="overdue-agency" data-agency="{_e(agency)}">'
            f"<div>{_agency(rows[0].get('late_agency'))}</div>"
            f'<div><span class="big">{_e(len(rows))}</span> 项 steps</div>'
            f'<div class="small">最长超期 longest {_e(duration(longest))} · 已催办 urged {_e(urged)}'
            f" · 已升级 escalated {_e(escalated)}</div></li>"
        )
    parts.append("</ul>")

    parts.append('<div class="scroll"><table data-testid="overdue-table"><thead><tr>')
    parts.append(
        "".join(
            [
                _th("责任机构", "Late agency"),
                _th("等待方", "Waiting"),
                _th("事项", "Rule"),
                _th("移送", "Referral"),
                _th("起算", "Started"),
                _th("期限", "Due"),
                _th("超期", "Late by", cls="n"),
                _th("状态", "Level"),
                _th("催办", "Urged"),
                _th("升级", "Escalated"),
            ]
        )
    )
    parts.append("</tr></thead><tbody>")
    for agency in order:
        rows = groups[agency]
        parts.append(
            f'<tr class="group"><th colspan="10">{_e(agency_name(rows[0].get("late_agency")))}'
            f" — {_e(len(rows))} 项超期 overdue</th></tr>"
        )
        for item in rows:
            level = item.get("level")
            parts.append(
                f'<tr data-testid="overdue-row" data-step-id="{_e(item.get("step_id"))}"'
                f' data-agency="{_e(item.get("late_agency"))}" data-level="{_e(level)}">'
                f"<td>{_agency(item.get('late_agency'))}</td>"
                f"<td>{_agency(item.get('counterpart'))}</td>"
                f'<td><span class="mono">{_e(item.get("rule"))}</span></td>'
                f"<td>{_referral_link(item.get('referral_id'))}</td>"
                f"<td>{_time(item.get('started_at'))}</td>"
                f"<td>{_time(item.get('due_at'))}</td>"
                f'<td class="n alert">{_duration_html(item.get("overdue_seconds"))}</td>'
                f"<td>{_level_badge(level)}</td>"
                f"<td>{_time(item.get('urged_at'))}</td>"
                f"<td>{_time(item.get('escalated_at'))}</td>"
                "</tr>"
            )
    parts.append("</tbody></table></div>")
    parts.append('<p class="note">d 天 day · h 小时 hour · m 分钟 minute</p>')
    parts.append("</section>")
    return "\n".join(parts)


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


def _f(x: float) -> str:
    return f"{x:.1f}"


def trend_svg(trend: list[dict]) -> str:
    """Grouped bar chart: transfers and overdue steps per day."""
    days = [
        (
            str(d.get("day")),
            _int(d.get("transfers")),
            _int(d.get("steps_due")),
            _int(d.get("steps_overdue")),
        )
        for d in trend
    ]
    n = len(days)
    width, height = 860, 300
    left, right, top, bottom = 56, 16, 40, 56
    plot_w, plot_h = width - left - right, height - top - bottom
    y_max, step = _nice_ceiling(max([v for _, t, _, o in days for v in (t, o)] or [1]))
    group_w = plot_w / max(n, 1)
    bar_w = max(2.0, min(22.0, group_w * 0.36))

    def y(v: int) -> float:
        return top + plot_h - (v / y_max) * plot_h

    label = (
        f"趋势图 Trend chart: 每日移送与超期事项 transfers and overdue steps per day, "
        f"{days[0][0]} – {days[-1][0]}"
        if n
        else "趋势图 Trend chart: 无数据 no data"
    )
    out = [
        f'<svg class="chart" data-testid="trend-chart" role="img" aria-label="{_e(label)}"'
        f' viewBox="0 0 {width} {height}" width="{width}" height="{height}"'
        ' xmlns="http://www.w3.org/2000/svg" font-size="12"'
        ' font-family="system-ui, \'Noto Sans CJK SC\', sans-serif">',
        f"<title>{_e(label)}</title>",
    ]
    # Grid and y axis ticks.
    for tick in range(0, y_max + 1, step):
        ty = y(tick)
        out.append(
            f'<line x1="{left}" x2="{width - right}" y1="{_f(ty)}" y2="{_f(ty)}"'
            f' stroke="{"#8a94a3" if tick == 0 else "#e3e7ed"}" stroke-width="1"/>'
            f'<text x="{left - 6}" y="{_f(ty + 4)}" text-anchor="end" fill="#4a5563">{_e(tick)}</text>'
        )
    out.append(f'<line x1="{left}" x2="{left}" y1="{top}" y2="{top + plot_h}" stroke="#8a94a3"/>')
    # Axis titles.
    out.append(
        f'<text x="14" y="{_f(top + plot_h / 2)}" text-anchor="middle" fill="#4a5563"'
        f' transform="rotate(-90 14 {_f(top + plot_h / 2)})">件数 count</text>'
    )
    out.append(
        f'<text x="{_f(left + plot_w / 2)}" y="{height - 8}" text-anchor="middle" fill="#4a5563">'
        "日期 day</text>"
    )
    # Legend.
    out.append(
        f'<g class="legend"><rect x="{left}" y="12" width="12" height="12" fill="#2f6fb5"/>'
        f'<text x="{left + 18}" y="22" fill="#1f2933">移送 transfers</text>'
        f'<rect x="{left + 130}" y="12" width="12" height="12" fill="#c0392b"/>'
        f'<text x="{left + 148}" y="22" fill="#1f2933">超期事项 overdue steps</text></g>'
    )
    label_every = max(1, -(-n // 14))
    for i, (day, transfers, due, overdue_steps) in enumerate(days):
        cx = left + group_w * i + group_w / 2
        for offset, value, color, css, text in (
            (-bar_w, transfers, "#2f6fb5", "bar-transfers", f"{day} 移送 transfers: {transfers}"),
            (
                0.0,
                overdue_steps,
                "#c0392b",
                "bar-overdue",
                f"{day} 超期 overdue steps: {overdue_steps} (到期 steps due: {due})",
            ),
        ):
            by = y(value)
            out.append(
                f'<rect class="bar {css}" data-testid="trend-bar" data-day="{_e(day)}"'
                f' data-value="{_e(value)}" x="{_f(cx + offset)}" y="{_f(by)}"'
                f' width="{_f(bar_w)}" height="{_f(top + plot_h - by)}" fill="{color}">'
                f"<title>{_e(text)}</title></rect>"
            )
        if i % label_every == 0:
            short = day[5:] if len(day) == 10 else day
            out.append(
                f'<text x="{_f(cx)}" y="{top + plot_h + 16}" text-anchor="middle" fill="#4a5563">'
                f"<title>{_e(day)}</title>{_e(short)}</text>"
            )
    out.append("</svg>")
    return "\n".join(out)


def _trend_section(trend: list[dict]) -> str:
    parts = ['<section class="card" id="trend">', "<h2>趋势 <span class=\"en\">Trend</span></h2>"]
    if not trend:
        parts.append('<p class="empty" data-testid="trend-empty">暂无趋势数据 No trend data.</p>')
    else:
        parts.append(trend_svg(trend))
        total_t = sum(_int(d.get("transfers")) for d in trend)
        total_o = sum(_int(d.get("steps_overdue")) for d in trend)
        parts.append(
            f'<p class="note">{_e(len(trend))} 天 days · 移送 transfers {_e(total_t)}'
            f" · 超期事项 overdue steps {_e(total_o)}</p>"
        )
    parts.append("</section>")
    return "\n".join(parts)


def _triple(row: Mapping, prefix: str) -> str:
    return (
        f'<td class="n">{_num(row.get(prefix + "_on_time"))}</td>'
        f'<td class="n">{_num(row.get(prefix + "_late"), alert=True)}</td>'
        f'<td class="n">{_num(row.get(prefix + "_open"))}</td>'
    )


def _stats_cells(row: Mapping) -> str:
    return (
        f'<td class="n">{_num(row.get("transfers_sent"))}</td>'
        f'<td class="n">{_num(row.get("transfers_received"))}</td>'
        + _triple(row, "receipts")
        + _triple(row, "decisions")
        + _triple(row, "feedback")
        + f'<td class="n">{_num(row.get("cases_opened"))}</td>'
        f'<td class="n">{_num(row.get("cases_refused"))}</td>'
        f'<td class="n">{_num(row.get("referrals_received"))}</td>'
        f'<td class="n">{_num(row.get("referrals_completed"))}</td>'
        f'<td class="n">{_percent(row.get("completion_rate"))}</td>'
        f'<td class="n">{_num(row.get("open_overdue_steps"), alert=True)}</td>'
        f'<td class="n">{_duration_html(row.get("max_overdue_seconds"))}</td>'
        f'<td class="n">{_duration_html(row.get("median_seconds_to_receipt"))}</td>'
        f'<td class="n">{_duration_html(row.get("median_seconds_to_decision"))}</td>'
        f'<td class="n">{_duration_html(row.get("median_seconds_to_feedback"))}</td>'
        f'<td class="n" data-testid="funds-recovered">{_e(yuan(row.get("funds_recovered_fen", 0)))}</td>'
    )


def _stats_section(stats: Mapping) -> str:
    parts = ['<section class="card" id="stats">', "<h2>统计 <span class=\"en\">Statistics</span></h2>"]
    agencies = list(stats.get("agencies") or [])
    totals = stats.get("totals")
    if not agencies and not totals:
        parts.append('<p class="empty" data-testid="stats-empty">暂无统计 No statistics.</p>')
        parts.append("</section>")
        return "\n".join(parts)
    sub = (
        "".join(_th(zh, en, cls="n") for zh, en in (("发出", "sent"), ("收到", "received")))
        + "".join(
            _th(zh, en, cls="n") for zh, en in (("按时", "on time"), ("超期", "late"), ("未办", "open"))
        )
        * 3
        + "".join(_th(zh, en, cls="n") for zh, en in (("立案", "opened"), ("不立案", "refused")))
        + "".join(
            _th(zh, en, cls="n") for zh, en in (("收到", "received"), ("办结", "completed"), ("办结率", "rate"))
        )
        + "".join(_th(zh, en, cls="n") for zh, en in (("未办", "open"), ("最长", "longest")))
        + "".join(
            _th(zh, en, cls="n") for zh, en in (("回执", "receipt"), ("决定", "decision"), ("反馈", "feedback"))
        )
    )
    parts.append('<div class="scroll"><table class="dense" data-testid="stats-table"><thead><tr>')
    parts.append(
        _th("机构", "Agency", span=' rowspan="2"')
        + _th("移送", "Transfers", span=' colspan="2"')
        + _th("回执", "Receipts", span=' colspan="3"')
        + _th("立案决定", "Decisions", span=' colspan="3"')
        + _th("反馈", "Feedback", span=' colspan="3"')
        + _th("案件", "Cases", span=' colspan="2"')
        + _th("办理", "Referrals", span=' colspan="3"')
        + _th("超期事项", "Overdue steps", span=' colspan="2"')
        + _th("中位用时", "Median time to", span=' colspan="3"')
        + _th("追回金额（元）", "Recovered (yuan)", cls="n", span=' rowspan="2"')
    )
    parts.append(f"</tr><tr>{sub}</tr></thead><tbody>")
    for row in agencies:
        parts.append(
            f'<tr data-testid="stats-row" data-agency="{_e(row.get("agency"))}">'
            f"<td>{_agency(row.get('agency'))}</td>{_stats_cells(row)}</tr>"
        )
    if not agencies:
        parts.append('<tr><td colspan="24" class="empty">暂无机构数据 No agencies.</td></tr>')
    parts.append("</tbody>")
    if totals:
        parts.append(
            '<tfoot><tr data-testid="stats-totals"><th>合计 <span class="en">Total</span></th>'
            f"{_stats_cells(totals)}</tr></tfoot>"
        )
    parts.append("</table></div>")
    parts.append(
        '<p class="note">办结率 = 办结 / 收到 · completion rate = completed / received · '
        "d 天 day · h 小时 hour · m 分钟 minute</p>"
    )
    parts.append("</section>")
    return "\n".join(parts)


def _search_text(item: Mapping) -> str:
    words: list[str] = []
    for key in ("referral_id", "reference"):
        if item.get(key) is not None:
            words.append(str(item[key]))
    opened_by = item.get("opened_by")
    if opened_by is not None:
        words.append(agency_name(opened_by))
    for key in ("first_kind", "last_kind"):
        kind = item.get(key)
        if kind is not None:
            words.append(str(kind))
            if str(kind) in KIND_NAMES:
                words.append(KIND_NAMES[str(kind)])
    return " ".join(words).lower()


def _referrals_section(referrals: list[dict]) -> str:
    parts = ['<section class="card" id="referrals">', "<h2>移送 <span class=\"en\">Referrals</span></h2>"]
    parts.append(
        '<div class="search"><label for="referral-search">搜索 <span class="en">Search</span></label>'
        '<input type="search" id="referral-search" autocomplete="off" spellcheck="false"'
        ' placeholder="编号、文号、机构或类型 id, reference, agency or kind"'
        ' aria-controls="referral-table">'
        f'<span class="muted" id="referral-count" aria-live="polite">{_e(len(referrals))} / '
        f"{_e(len(referrals))}</span></div>"
    )
    if not referrals:
        parts.append('<p class="empty" data-testid="referrals-empty">暂无移送 No referrals.</p>')
        parts.append("</section>")
        return "\n".join(parts)
    parts.append('<div class="scroll"><table id="referral-table" data-testid="referral-table"><thead><tr>')
    parts.append(
        _th("移送编号", "Referral")
        + _th("文号", "Reference")
        + _th("发起机构", "Opened by")
        + _th("首条", "First message")
        + _th("发起时间", "Opened at")
        + _th("最新", "Last message")
        + _th("最新时间", "Last at")
        + _th("消息", "Messages", cls="n")
        + _th("未结", "Open steps", cls="n")
        + _th("超期", "Overdue", cls="n")
    )
    parts.append("</tr></thead><tbody>")
    for item in referrals:
        rid = item.get("referral_id")
        parts.append(
            f'<tr data-testid="referral-row" data-referral-id="{_e(rid)}" data-search="{_e(_search_text(item))}">'
            f"<td>{_referral_link(rid)}</td>"
            f"<td>{_e(item.get('reference'))}</td>"
            f"<td>{_agency(item.get('opened_by'))}</td>"
            f"<td>{_kind(item.get('first_kind'))}</td>"
            f"<td>{_time(item.get('opened_at'))}</td>"
            f"<td>{_kind(item.get('last_kind'))}</td>"
            f"<td>{_time(item.get('last_at'))}</td>"
            f'<td class="n">{_num(item.get("messages"))}</td>'
            f'<td class="n">{_num(item.get("open_steps"))}</td>'
            f'<td class="n">{_num(item.get("overdue_steps"), alert=True)}</td>'
            "</tr>"
        )
    parts.append(
        '<tr id="referral-no-match" hidden><td colspan="10" class="empty">'
        "没有匹配的移送 No matching referral.</td></tr>"
    )
    parts.append("</tbody></table></div></section>")
    return "\n".join(parts)


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


def _facts(facts: Any) -> str:
    if not isinstance(facts, Mapping) or not facts:
        return ""
    tags = "".join(
        f'<span class="tag" data-testid="fact"><b>{_e(k)}</b> {_e(_fact_value(str(k), v))}</span>'
        for k, v in facts.items()
    )
    return f'<div class="facts">{tags}</div>'


def _ordered(events: Iterable[dict]) -> list[dict]:
    indexed = list(enumerate(events))
    floor = datetime.min.replace(tzinfo=timezone.utc)

    def key(pair: tuple[int, dict]) -> tuple:
        when = _parse_time(pair[1].get("sent_at"))
        return (when is None, when or floor, pair[0])

    return [event for _, event in sorted(indexed, key=key)]


def _steps_table(steps: list[dict]) -> str:
    if not steps:
        return '<p class="empty" data-testid="steps-empty">没有期限事项 No deadline steps.</p>'
    out = ['<div class="scroll"><table data-testid="steps-table"><thead><tr>']
    out.append(
        _th("事项", "Rule")
        + _th("责任机构", "Must act")
        + _th("等待方", "Waiting")
        + _th("起算", "Started")
        + _th("期限", "Due")
        + _th("状态", "State")
        + _th("完成", "Closed at")
        + _th("超期", "Late by", cls="n")
        + _th("级别", "Level")
    )
    out.append("</tr></thead><tbody>")
    for step in steps:
        state = step.get("state")
        state_html = (
            '<span class="badge open">未结 open</span>'
            if state == "open"
            else '<span class="badge closed">已结 closed</span>'
            if state == "closed"
            else f'<span class="badge lv-other">{_e(state)}</span>'
        )
        late = _int(step.get("overdue_seconds"))
        if late > 0:
            late_html = f'<span class="alert">{_duration_html(late)}</span>'
        elif state == "closed":
            late_html = '<span class="muted">按时 on time</span>'
        else:
            late_html = '<span class="muted">未超期 not late</span>'
        out.append(
            f'<tr data-testid="step-row" data-step-id="{_e(step.get("step_id"))}" data-state="{_e(state)}">'
            f'<td><span class="mono">{_e(step.get("rule"))}</span></td>'
            f"<td>{_agency(step.get('late_agency'))}</td>"
            f"<td>{_agency(step.get('counterpart'))}</td>"
            f"<td>{_time(step.get('started_at'))}</td>"
            f"<td>{_time(step.get('due_at'))}</td>"
            f"<td>{state_html}</td>"
            f"<td>{_time(step.get('closed_at'))}</td>"
            f'<td class="n">{late_html}</td>'
            f"<td>{_level_badge(step.get('level')) if step.get('level') else ''}</td>"
            "</tr>"
        )
    out.append("</tbody></table></div>")
    return "\n".join(out)


def render_referral(*, as_of: str, timeline: dict) -> str:
    """One referral: its messages in time order and its deadline steps."""
    timeline = dict(timeline or {})
    rid = timeline.get("referral_id")
    events = _ordered(list(timeline.get("events") or []))
    steps = list(timeline.get("steps") or [])
    open_steps = sum(1 for s in steps if s.get("state") == "open")
    late_steps = sum(1 for s in steps if _int(s.get("overdue_seconds")) > 0)
    header = (
        f'<div class="sub"><a href="{_e(DASHBOARD_PATH)}">← 工作台 Dashboard</a></div>'
        f'<h1>移送 <span class="en">Referral</span> <span class="mono" data-testid="referral-id">{_e(rid)}</span></h1>'
        f'<div class="sub">截至 As of: {_time(as_of)} · 消息 messages {_e(len(events))} · '
        f"未结事项 open steps {_e(open_steps)} · 超期 late {_e(late_steps)} · 时间为北京时间 Times in Asia/Shanghai</div>"
    )
    parts = ['<section class="card" id="timeline">', "<h2>时间线 <span class=\"en\">Timeline</span></h2>"]
    if not events:
        parts.append('<p class="empty" data-testid="timeline-empty">没有消息 No messages.</p>')
    else:
        parts.append('<ol class="timeline" data-testid="timeline">')
        for index, event in enumerate(events, start=1):
            signature = (
                '<span class="badge ok">签名有效 signature ok</span>'
                if event.get("signature_ok") is True
                else '<span class="badge bad">签名无效 signature failed</span>'
            )
            sealed = (
                ' <span class="badge sealed" data-testid="sealed">密封 sealed</span>' if event.get("sealed") else ""
            )
            reply = (
                f' · 答复 reply to <span class="mono">{_e(event.get("in_reply_to"))}</span>'
                if event.get("in_reply_to")
                else ""
            )
            parts.append(
                f'<li data-testid="timeline-event" data-index="{_e(index)}"'
                f' data-kind="{_e(event.get("kind"))}" data-message-id="{_e(event.get("message_id"))}">'
                f'<div><span class="when">{_time(event.get("sent_at"))}</span>'
                f'<span class="route">{_agency(event.get("sender"))} → {_agency(event.get("recipient"))}</span>'
                f"{_kind(event.get('kind'))}</div>"
                f"<div>{signature}{sealed}</div>"
                f"{_facts(event.get('facts'))}"
                f'<div class="meta">消息 message <span class="mono">{_e(event.get("message_id"))}</span>{reply}</div>'
                "</li>"
            )
        parts.append("</ol>")
    parts.append("</section>")
    parts.append('<section class="card" id="steps">')
    parts.append("<h2>期限事项 <span class=\"en\">Deadline steps</span></h2>")
    parts.append(_steps_table(steps))
    parts.append('<p class="note">d 天 day · h 小时 hour · m 分钟 minute</p></section>')
    return _page(f"移送 Referral {rid if rid is not None else ''}", header, "\n".join(parts))


def render_not_found(message: str) -> str:
    """A 404 page with the message (escaped) and a way back to the dashboard."""
    header = '<h1>未找到 <span class="en">Not found</span></h1>'
    body = (
        '<section class="card" data-testid="not-found">'
        f"<p>{_e(message)}</p>"
        f'<p><a href="{_e(DASHBOARD_PATH)}">← 返回工作台 Back to the dashboard</a></p></section>'
    )
    return _page("未找到 Not found", header, body)
