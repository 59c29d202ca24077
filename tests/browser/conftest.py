"""Fixtures for the dashboard's browser tests: Selenium driving Debian's headless Chromium
against the REAL joint-office service (Nameko, its HTTP gateway, a real RabbitMQ and its
own SQLite database), filled with signed messages of three referrals.

Fixture contract (the tests rely on nothing else):

- ``dashboard_sample`` returns the data the served pages show, read through the office's
  own handlers::

      {"office_name": str, "as_of": str, "overdue": [overdue item, ...], "stats": StatsReport JSON,
       "referrals": [referral list item, ...], "timelines": {referral_id: timeline, ...},
       "agency_names": {code: name_zh, ...}, "closed_late": [step view, ...], "first_sent_at": str}

  with at least one overdue item (open and past its limit), at least one step closed late (not
  open, so not in ``overdue``), at least two referrals, a timeline for every referral, the
  agency names of the configuration, and the moment the first message was sent.
- ``dashboard_url`` returns the base URL (no trailing slash) of the office's HTTP gateway.
- ``office_account`` returns ``(name, password)`` of a staff account of that office; every
  page and API route but ``/login`` needs a session, made by logging in with it.
"""

from __future__ import annotations

import os
import socket
import uuid
from datetime import datetime, timedelta, timezone

import pytest

from adapters.crypto.keys import initialise_key_directory
from adapters.crypto.timestamps import format_timestamp
from services import config as c
from services import provisioning
from services.demo import story
from services.office import handlers
from services.office.accounts import accounts_file
from services.office.service import OFFICE_NAME, build_office_service
from services.nodes.factory import container_config
from services.bootstrap import office_context, offline_context
from tests.fixtures.keys import FakeClock

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"

CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1400,1000",
)

# The shared test broker and its administrator (who provisions the test's bus).
BROKER_ADDRESS = "127.0.0.1:5672"
MANAGEMENT_URI = "http://guest:guest@127.0.0.1:15672/"

# Tuesday 2026-11-24, 16:00 in Shanghai.
AS_OF = datetime(2026, 11, 24, 8, 0, tzinfo=timezone.utc)

OFFICE_ACCOUNT = ("wang.li", "browser-test password 2026")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _fill(config, clock: FakeClock) -> None:
    """Three referrals, signed by the agencies' own keys and observed by the office:
    one whose filing decision is late and urged, one health clue so late it is escalated,
    one that ran to a judgment."""
    office = office_context(config)
    office.node.clock = clock
    agents = {a: offline_context(config, a) for a in ("medical_security", "public_security", "health",
                                                       "procuratorate", "court")}

    def send(agency, kind, recipient, body, referral, at, reply_to=None):
        message = agents[agency].composer.compose(kind, recipient, body, referral_id=referral,
                                                  in_reply_to=reply_to, sent_at=at)
        clock.now = at + timedelta(seconds=2)     # the office observes each message as it is sent
        handlers.observe(office, message.raw)
        return message

    def receipt(agency, message, at):
        body = {"status": "accepted", "message_sha256": message.sha256, "received_at": at, "reason_codes": []}
        send(agency, "receipt", message.envelope["sender"], body, message.envelope["referral_id"], at,
             reply_to=message.message_id)

    late = str(uuid.uuid4())
    start = AS_OF - timedelta(days=6)
    clue = send("medical_security", "clue_transfer", "public_security", story.crime_clue(start, "YB-2026-0201"),
                late, start)
    receipt("public_security", clue, start + timedelta(hours=3))

    escalated = str(uuid.uuid4())
    start = AS_OF - timedelta(days=40)
    clue = send("medical_security", "clue_transfer", "health", story.health_clue(start), escalated, start)
    receipt("health", clue, start + timedelta(hours=20))

    done = str(uuid.uuid4())
    start = AS_OF - timedelta(days=20)
    clue = send("medical_security", "clue_transfer", "public_security", story.crime_clue(start, "YB-2026-0150"),
                done, start)
    receipt("public_security", clue, start + timedelta(hours=1))
    decided = start + timedelta(days=1)
    decision = send("public_security", "filing_decision", "medical_security",
                    story.filed(decided, "公(经)立字[2026]0533号"), done, decided, reply_to=clue.message_id)
    receipt("medical_security", decision, decided + timedelta(minutes=5))
    # Handed over two days after the 3-day limit: a step closed late, not open, so not overdue.
    handed = decided + timedelta(days=6)
    handover = send("medical_security", "materials_handover", "public_security",
                    story.materials(handed, "公(经)立字[2026]0533号"), done, handed)
    receipt("public_security", handover, handed + timedelta(hours=2))
    judged = start + timedelta(days=15)
    send("court", "judgment", "medical_security", story.judgment(judged), done, judged)

    # The office's timer would urge at these moments; act as it would (the health clue is
    # urged five days ago, so it is escalated now).
    clock.now = AS_OF - timedelta(days=5)
    handlers.act_on_due_steps(office)
    clock.now = AS_OF
    handlers.act_on_due_steps(office)


@pytest.fixture(scope="session")
def office_node(tmp_path_factory):
    """The real office service, on a fixed clock, on a bus of its own on the broker (its own
    virtual hosts and accounts, made by ``cluebus broker setup``'s code and removed after)."""
    from nameko.containers import ServiceContainer

    base = tmp_path_factory.mktemp("office")
    run = uuid.uuid4().hex[:8]
    environ = {"CLUEBUS_DATA_DIR": str(base / "data"), "CLUEBUS_KEYS_DIR": str(base / "keys"),
               "CLUEBUS_BUS_URI": f"amqp://{BROKER_ADDRESS}/browser-{run}",
               "CLUEBUS_CONTROL_URI": f"amqp://{BROKER_ADDRESS}/browser-{run}.{{agency}}.control",
               "CLUEBUS_BROKER_USER_PREFIX": f"browser-{run}.",
               "CLUEBUS_CREDENTIALS_DIR": str(base / "credentials"),
               "CLUEBUS_BROKER_ADMIN_URI": MANAGEMENT_URI,
               "CLUEBUS_OFFICE_HTTP": f"127.0.0.1:{_free_port()}",
               "CLUEBUS_OFFICE_ACCOUNTS_FILE": str(base / "office-accounts.yaml"),
               # The test acts on due steps itself; the timer must not change the pages meanwhile.
               "CLUEBUS_OFFICE_SCAN_SECONDS": "3600",
               # Nor may its relay publish the urges (they would come back as new events).
               "CLUEBUS_RELAY_INTERVAL_SECONDS": "3600"}
    config = c.load_config(environ=environ)
    clock = FakeClock(AS_OF - timedelta(days=1))
    initialise_key_directory(config[c.KEYS_DIR], c.agency_codes(config), validity=timedelta(days=365),
                             now=AS_OF - timedelta(days=90))
    _fill(config, clock)
    accounts_file(config).add(*OFFICE_ACCOUNT)
    clock.now = AS_OF
    provisioning.setup(config)
    try:
        container = ServiceContainer(build_office_service(config, clock=clock),
                                     container_config(config, "joint_office"))
        container.start()
        try:
            yield config, clock
        finally:
            container.stop()
    finally:
        provisioning.remove(config)


@pytest.fixture(scope="session")
def dashboard_sample(office_node) -> dict:
    config, clock = office_node
    office = office_context(config)
    referrals = handlers.referrals(office, clock.now)
    timelines = {r["referral_id"]: handlers.timeline(office, r["referral_id"], clock.now) for r in referrals}
    return {
        "office_name": OFFICE_NAME,
        "as_of": format_timestamp(clock.now),
        "overdue": handlers.overdue(office, clock.now),
        "stats": handlers.statistics(office, clock.now - timedelta(days=30), clock.now, clock.now).to_json(),
        "referrals": referrals,
        "timelines": timelines,
        "agency_names": c.agency_names(config),
        "closed_late": [s for t in timelines.values() for s in t["steps"] if s["status"] == "late"],
        "first_sent_at": min(e["sent_at"] for t in timelines.values() for e in t["events"]),
    }


@pytest.fixture(scope="session")
def dashboard_url(office_node) -> str:
    config, _ = office_node
    return f"http://{config[c.OFFICE][c.HTTP_ADDRESS]}"


@pytest.fixture(scope="session")
def office_account(office_node) -> tuple[str, str]:
    return OFFICE_ACCOUNT


@pytest.fixture(scope="session")
def browser(tmp_path_factory):
    """A headless Chromium (Debian's package) driven by Debian's chromedriver; no downloads."""
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not os.access(p, os.X_OK)]
    if missing and os.environ.get("CLUEBUS_REQUIRE_BROWSER"):
        pytest.fail(f"CLUEBUS_REQUIRE_BROWSER is set but {', '.join(missing)} is missing")
    if missing:
        pytest.skip(
            f"browser tests need Debian's Chromium and chromedriver, missing: {', '.join(missing)} "
            "(apt-get install -y chromium chromium-driver)"
        )
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    workdir = tmp_path_factory.mktemp("chromium")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={workdir / 'profile'}")
    service = Service(executable_path=CHROMEDRIVER, log_output=str(workdir / "chromedriver.log"))
    driver = webdriver.Chrome(service=service, options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()
