"""The office's one Jinja2 environment: every page (the login page and the dashboard's) is a
template in ``templates/``, rendered with autoescaping on for every template and every string,
so a value from the data can never become markup. Only the pages' own constant script and
style are passed as ``Markup``.
"""

from __future__ import annotations

from functools import lru_cache

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from . import formatting


@lru_cache(maxsize=1)
def environment() -> Environment:
    env = Environment(
        loader=PackageLoader("services.office", "templates"),
        # On for .html/.svg/.xml and, by default, for every other template and string too.
        autoescape=select_autoescape(enabled_extensions=("html", "htm", "svg", "xml"),
                                     default_for_string=True, default=True),
        undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters.update(local_time=formatting.local_time, yuan=formatting.yuan, duration=formatting.duration,
                       percent=formatting.percent, to_int=formatting.to_int, parse_time=formatting.parse_time,
                       referral_href=formatting.referral_href, dashboard_href=formatting.dashboard_href)
    return env


def render(template: str, /, **context) -> str:
    return environment().get_template(template).render(**context)
