"""Acting as an agency: run its node, send and answer messages, read its inbox, outbox,
quarantine and the verified trace of a referral.

``send`` and ``answer`` write to the agency's own database in one transaction (state change,
signed envelope, outbox row) and then publish; if the broker is down, the running node's
relay publishes later. Reading commands read the node's database directly, so they work
whether or not the node is running.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import signal
import sys
import time
import uuid
from datetime import timedelta
from pathlib import Path

import eventlet
from sqlalchemy.engine import make_url

from adapters.crypto.exceptions import CryptoError
from adapters.storage.migrations import DatabaseBehind, DatabaseUnrecognised
from adapters.transport.publisher import EnvelopePublisher
from schemas.registry import CLUE_TRANSFER, KINDS
from services import config as c
from services import settings
from services.domain.exceptions import DomainError
from services.handlers import queries, receiving, relay, workflows
from services.handlers.relay_lease import RelayLease
from services.office.accounts import AccountsError, accounts_file, refuse_exposed_without_accounts
from services.protocol.exceptions import ComposeError
from adapters.transport import dead_letters
from adapters.transport.credentials import CredentialsError
from services.handlers.receiving import Delivery
from services.handlers.requests import Request
from services.bootstrap import DatabaseMissing, DatabaseUnavailable, node_agencies, offline_context, open_store
from services.runner import BrokerUnreachable, check_bus, check_control, start_nodes

from .errors import CommandError
from .progress import Progress
from .times import time_format

DEFAULT_WAIT_SECONDS = 60.0


def register(commands) -> None:
    run = commands.add_parser("run", help="run one agency's node until Ctrl-C")
    run.add_argument("--agency", required=True)
    run.set_defaults(handler=run_node)

    send = commands.add_parser("send", help="send a message from a JSON body file, as an agency")
    _as(send)
    send.add_argument("--file", required=True, help="JSON file with the message body")
    send.add_argument("--kind", default=CLUE_TRANSFER, choices=KINDS, help="message kind (default: clue_transfer)")
    send.add_argument("--to", dest="recipient", help="recipient agency (default: the role's usual one)")
    send.add_argument("--referral", help="an existing referral to follow up")
    _sealing_options(send)
    send.add_argument("--request-id", help="a request id of your own: a repeated command with it sends nothing new")
    _wait_option(send)
    send.set_defaults(handler=send_message)

    answer = commands.add_parser("answer", help="answer a message in the inbox")
    answer.add_argument("message_id")
    _as(answer)
    answer.add_argument("--kind", required=True, choices=KINDS)
    answer.add_argument("--file", required=True, help="JSON file with the answer's body")
    _sealing_options(answer)
    answer.add_argument("--request-id", help="a request id of your own: a repeated command with it sends nothing new")
    _wait_option(answer)
    answer.set_defaults(handler=answer_message)

    for name, handler, helptext in (("inbox", show_inbox, "messages received"),
                                    ("outbox", show_outbox, "messages sent, with delivery state"),
                                    ("quarantine", show_quarantine,
                                     "messages kept aside unanswered (unauthenticated, reused ids, stray receipts)")):
        view = commands.add_parser(name, help=helptext)
        _as(view)
        view.add_argument("--json", action="store_true")
        if name == "outbox":
            view.add_argument("--retry", metavar="MESSAGE_ID",
                              help="publish a message marked failed again (same bytes, fresh attempts)")
        if name == "quarantine":
            where = view.add_mutually_exclusive_group()
            where.add_argument("--broker", action="store_true",
                               help="list what the broker dead-lettered to the agency's quarantine queue instead")
            where.add_argument("--replay", action="store_true",
                               help="take those dead letters through the node's receiving again (each acked "
                                    "after its commit)")
        if name == "inbox":
            view.add_argument("--kind", choices=KINDS)
            view.add_argument("--status", choices=("accepted", "rejected"))
            view.add_argument("--limit", type=int, default=50)
        view.set_defaults(handler=handler)

    show = commands.add_parser("show", help="one stored message, verified again from its bytes, with its body")
    show.add_argument("message_id")
    _as(show)
    show.add_argument("--json", action="store_true")
    show.set_defaults(handler=show_message)

    trace = commands.add_parser("trace", help="the verified timeline of a referral from node databases")
    trace.add_argument("referral_id")
    trace.add_argument("--as", dest="agency", help="one node's database (default: every node's found here)")
    trace.add_argument("--json", action="store_true")
    trace.set_defaults(handler=show_trace)


def _sealing_options(parser) -> None:
    seal = parser.add_mutually_exclusive_group()
    seal.add_argument("--seal", dest="seal", action="store_true", default=None,
                      help="seal the body for the recipient (the default when DELIVERY.SEAL_BODIES is true)")
    seal.add_argument("--no-seal", dest="seal", action="store_false", help="send the body in the clear")


def _wait_option(parser) -> None:
    parser.add_argument("--wait", type=_seconds, nargs="?", const=DEFAULT_WAIT_SECONDS, metavar="SECONDS",
                        help=f"then wait for the recipients' receipts (default {DEFAULT_WAIT_SECONDS:.0f} s), which "
                             "the running node records; exit 1 unless every one accepts")


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not 0 < value <= 86400:
        raise argparse.ArgumentTypeError(f"{text!r}: give between 0 and 86400 seconds")
    return value


def _as(parser) -> None:
    parser.add_argument("--as", dest="agency", required=True, help="the agency you act as")


def _config_for(args, agency: str | None = None) -> dict:
    config = c.load_config(args.config)
    if agency is not None and agency not in c.agency_codes(config):
        raise CommandError(f"{agency!r} is not a configured agency ({', '.join(c.agency_codes(config))})")
    return config


def _context(config, agency, *, create: bool = True):
    """The agency's context on its own database; reading commands pass ``create=False`` so
    that they never make a database for an agency whose node never ran here."""
    try:
        return offline_context(config, agency, create=create)
    except CryptoError as exc:
        raise CommandError(f"[{exc.rule}] {exc.detail}") from None
    except (DatabaseMissing, DatabaseUnavailable) as exc:
        raise CommandError(str(exc)) from None


# -- run -------------------------------------------------------------------------------------
def run_node(args: argparse.Namespace) -> int:
    config = _config_for(args, args.agency)
    office = args.agency in c.observer_codes(config)
    settings.key_directory(config).load_private(args.agency)  # fail early, in one line
    accounts = _office_accounts(config, args.agency) if office else None
    _check_database(config, args.agency)
    try:
        check_bus(config, args.agency)
        check_control(config, args.agency)
    except BrokerUnreachable as exc:
        raise CommandError(str(exc)) from None
    try:
        runner = start_nodes(config, [] if office else [args.agency], office=office)
    except (DatabaseBehind, DatabaseUnrecognised) as exc:  # one line: which command to run
        raise CommandError(str(exc)) from None
    except Exception as exc:  # the broker refused the topology, the port is taken, ...
        raise CommandError(f"could not start the {args.agency} node: {exc.__class__.__name__}: {exc}"
                           f"{_hint(exc)}") from None
    stopping = []

    def shutdown(signum, frame):
        # Stop cleanly: workers in flight finish and ack what they stored; nothing is lost,
        # since unacked messages stay in the queue. A second signal changes nothing.
        if not stopping:
            stopping.append(signum)
            eventlet.spawn_n(runner.stop)

    # Both explicitly: a node started in the background inherits an ignored SIGINT.
    signal.signal(signal.SIGTERM, shutdown)
    signal.signal(signal.SIGINT, shutdown)
    # Only now say it runs: a Ctrl-C from here on stops it cleanly.
    print(f"{args.agency} node running: queue {settings.topology(config).queue_name(args.agency)}, "
          f"database {_shown_url(c.database_url(config, args.agency))}. Ctrl-C stops it.", flush=True)
    if office:
        print(f"dashboard: http://{config[c.OFFICE][c.HTTP_ADDRESS]}/dashboard", flush=True)
        if not accounts.accounts():
            print("no office account yet: add one with `cluebus office account add NAME` to log in", flush=True)

    try:
        eventlet.spawn(runner.wait).wait()
    except Exception as exc:  # an extension gave up: say so in one line
        print(f"cluebus: the {args.agency} node stopped: {exc.__class__.__name__}: {exc}", file=sys.stderr, flush=True)
        return 1
    print(f"{args.agency} node stopped", flush=True)
    return 0


def _check_database(config, agency: str) -> None:
    """Refuse, in one line, a database behind this release (its fix: `cluebus db upgrade`);
    a new, empty one is created, as the node would at start-up."""
    try:
        open_store(config, agency).dispose()
    except (DatabaseBehind, DatabaseUnrecognised, DatabaseMissing, DatabaseUnavailable) as exc:
        raise CommandError(str(exc)) from None


def _office_accounts(config, agency: str):
    """The office's accounts, checked before starting as its ``OfficeLogin`` checks them when
    it starts (which would say it in tracebacks too): the file's mode, and an account when the
    dashboard listens beyond loopback."""
    accounts = accounts_file(config)
    try:
        refuse_exposed_without_accounts(config[c.OFFICE][c.HTTP_ADDRESS], accounts)
    except AccountsError as exc:
        raise CommandError(f"the {agency} node does not start: {exc}") from None
    return accounts


def _hint(exc: Exception) -> str:
    if "PRECONDITION_FAILED" in str(exc) and "inequivalent arg" in str(exc):
        return (" (a queue was declared by an earlier build with other arguments: drain and delete it, "
                "see docs/architecture.md, known limitations)")
    return ""


# -- send / answer -------------------------------------------------------------------------------
def _read_body(path: str) -> dict:
    try:
        body = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CommandError(f"cannot read a JSON body from {path}: {exc}") from None
    if not isinstance(body, dict):
        raise CommandError(f"{path} must hold a JSON object")
    return body


def _publish_now(config, ctx, sent) -> bool:
    """Publish what was committed, if the bus can be used now. True when it was published or
    it waits safely for a reason that passes (the broker cannot be reached, or the running
    node's relay has it); False when it stays in the outbox for a reason waiting does not fix
    (a refused account, a missing virtual host, an unprovisioned bus, a refused publication)."""
    for message in sent.summary["messages"]:
        print(f"  {message['kind']} {message['message_id']} → {message['recipient']}"
              f" (sha256 {message['sha256'][:16]}…)")
    print(f"  referral {sent.referral_id}")
    try:
        credentials = settings.credential_store(config).load(ctx.agency)
        check_bus(config, ctx.agency, timeout=3)
    except (BrokerUnreachable, CredentialsError) as exc:
        print(f"  not published now: {exc}")
        if getattr(exc, "transient", False):
            print("  kept in the outbox: the node's relay publishes it when the broker can be reached")
            return True
        print("  kept in the outbox, but this does not pass by waiting: fix the above, then the node's relay "
              "publishes it")
        print(f"cluebus: {ctx.agency}: committed but not published: {exc}", file=sys.stderr)
        return False
    # One relay per node: a running node holds the relay lease and publishes it at once.
    lease = RelayLease(timedelta(seconds=float(config[c.DELIVERY].get(c.LEASE_SECONDS, 10))))
    if not lease.hold(ctx):
        print("  committed; to be published by the running node's relay (it holds the relay lease)")
        return True
    publisher = EnvelopePublisher(settings.bus_uri(config, ctx.agency, credentials), settings.topology(config),
                                  credentials.bus.user)
    try:
        report = relay.relay_due(ctx, publisher.publish, message_ids=[m["message_id"] for m in sent.summary["messages"]],
                                 resends=False)
    finally:
        publisher.close()
        lease.release_in(ctx.store)
    for message_id, error in report.errors.items():
        print(f"  not published yet ({error}); kept in the outbox")
    if report.published:
        print(f"  published {len(report.published)} message(s); the receipt arrives at the running node")
    if report.errors:
        print(f"cluebus: {ctx.agency}: {len(report.errors)} message(s) committed but not published "
              f"(see above; `cluebus outbox --as {ctx.agency}`)", file=sys.stderr)
    return not report.errors


def _request(args, action: str) -> Request:
    """One request id per invocation (or the caller's --request-id, to repeat a call safely)."""
    return Request(args.request_id or f"cli:{uuid.uuid4()}", action)


def _acting(action):
    try:
        return action()
    except (DomainError, ComposeError) as exc:
        raise CommandError(f"refused [{exc.rule}] {exc.detail}") from None


def send_message(args: argparse.Namespace) -> int:
    config = _config_for(args, args.agency)
    body = _read_body(args.file)
    ctx = _context(config, args.agency)
    seal = _sealing(config, args.seal)
    request = _request(args, "send")
    if args.referral:
        if not args.recipient:
            raise CommandError("--to is required when following up a referral")
        sent = _acting(lambda: workflows.follow_up(ctx, args.referral, args.kind, body, [args.recipient], seal=seal,
                                                   request=request))
    elif args.kind == CLUE_TRANSFER:
        refer = _refer_action(config, args.agency)
        recipient = args.recipient or refer.recipients[0]
        sent = _acting(lambda: workflows.refer_clue(ctx, body, recipient, copy_to=refer.copy_to, seal=seal,
                                                    request=request))
    else:
        if not args.recipient:
            raise CommandError(f"--to is required for {args.kind}")
        sent = _acting(lambda: workflows.start(ctx, args.kind, args.recipient, body, seal=seal, request=request))
    if sent.repeated:
        print(f"{args.agency}: request {request.request_id} was done before; nothing new sent")
    else:
        print(f"{args.agency}: signed and committed {len(sent)} message(s)")
    return _published_and_receipted(args, config, ctx, sent)


def _published_and_receipted(args, config, ctx, sent) -> int:
    if not _publish_now(config, ctx, sent):
        return 1
    if args.wait is None:
        return 0
    return 0 if _wait_for_receipts(ctx, sent, args.wait, time_format(args, config)) else 1


SETTLED = ("receipted", "done", "failed")  # services/domain/delivery.py: nothing more will come


def _wait_for_receipts(ctx, sent, seconds: float, when) -> bool:
    """Poll the agency's own database (the running node records receipts there) until every
    message sent has its receipt, or gave up, or ``seconds`` pass; one line per message.
    True when every one was accepted."""
    wanted = [m["message_id"] for m in sent.summary["messages"]]
    deadline = time.monotonic() + seconds
    with Progress(f"waiting for {len(wanted)} receipt(s)", total=len(wanted), transient=True) as progress:
        while True:
            with ctx.store.transaction() as repo:
                rows = [queries.outbox_summary(repo.outbox_entry(m), repo.message(m)) for m in wanted]
            settled = sum(row["state"] in SETTLED for row in rows)
            if settled == len(rows) or time.monotonic() >= deadline:
                break
            progress.update(done=settled)
            eventlet.sleep(0.2)  # a person is waiting; polling one's own database is cheap
    accepted = True
    for row in rows:
        what = f"  {row['kind']} {row['message_id']} → {row['recipient']}:"
        if row["state"] == "done":
            print(f"{what} needs no receipt")
        elif row["state"] == "receipted":
            codes = f" ({', '.join(row['reason_codes'])})" if row["reason_codes"] else ""
            print(f"{what} receipt {row['status']}{codes}")
            accepted &= row["status"] == "accepted"
        elif row["state"] == "failed":
            print(f"{what} delivery gave up after {row['attempts']} attempt(s): {row['last_error'] or 'no receipt'}")
            accepted = False
        else:
            print(f"{what} no receipt within {seconds:g} s ({row['state']}); it stays in the outbox and the "
                  f"{ctx.agency} node, which records receipts, keeps delivering it while it runs")
            accepted = False
    return accepted


def _sealing(config, choice: bool | None) -> bool:
    return bool(config[c.DELIVERY][c.SEAL_BODIES]) if choice is None else choice


def _refer_action(config, agency: str):
    """The agency's refer action (ROLES_FILE): its usual recipient and the copy target."""
    action = settings.refer_action(config, agency)
    if action is None:
        raise CommandError(f"{agency} has no refer action in ROLES_FILE: it does not transfer clues")
    return action


def answer_message(args: argparse.Namespace) -> int:
    config = _config_for(args, args.agency)
    body = _read_body(args.file)
    ctx = _context(config, args.agency)
    request = _request(args, "answer")
    sent = _acting(lambda: workflows.reply(ctx, args.message_id, args.kind, body, seal=_sealing(config, args.seal),
                                           request=request))
    print(f"{args.agency}: {'already answered' if sent.repeated else 'answered'} {args.message_id}")
    return _published_and_receipted(args, config, ctx, sent)


# -- views -----------------------------------------------------------------------------------------
def _emit(rows, as_json: bool, line) -> int:
    if as_json:
        json.dump(rows, sys.stdout, ensure_ascii=False, indent=2)
        print()
        return 0
    if not rows:
        print("(nothing)")
    for row in rows:
        print(line(row))
    return 0


def show_inbox(args) -> int:
    config = _config_for(args, args.agency)
    when = time_format(args, config)
    ctx = _context(config, args.agency, create=False)
    rows = queries.inbox(ctx, kind=args.kind, status=args.status, limit=args.limit)
    return _emit(rows, args.json, lambda r: (
        f"{when(r['sent_at'])}  {r['message_id']}  {r['kind']:<28} from {r['sender']:<16} "
        f"{r['status']}{' ' + ','.join(r['reason_codes']) if r['reason_codes'] else ''}  referral {r['referral_id']}"
        f"{_headline(r.get('body'))}"))


def _headline(body) -> str:
    """What names the matter, when the body has it: the clue number and title, else a case
    number (sealed or rejected messages have no body to read here)."""
    if not isinstance(body, dict):
        return ""
    words = [str(body[key]) for key in ("clue_no", "title") if body.get(key)]
    if not words and body.get("case_no"):
        words = [str(body["case_no"])]
    return f"  {' '.join(words)}" if words else ""


def show_message(args) -> int:
    config = _config_for(args, args.agency)
    when = time_format(args, config)
    ctx = _context(config, args.agency, create=False)
    detail = queries.message_detail(ctx, args.message_id)
    if detail is None:
        raise CommandError(f"{args.agency} holds no message {args.message_id}")
    if args.json:
        json.dump(detail, sys.stdout, ensure_ascii=False, indent=2)
        print()
        return 0 if detail["signature"]["ok"] else 1
    signature = detail["signature"]
    verdict = "signature ok" if signature["ok"] else f"signature FAILED [{signature['rule']}] {signature['detail']}"
    print(f"{detail['kind']} {detail['message_id']} (schema {detail['schema_version']}): {verdict}")
    print(f"  {detail['sender']} → {detail['recipient']}  ({'received' if detail['direction'] == 'in' else 'sent'} "
          f"by {args.agency})")
    print(f"  referral {detail['referral_id']}"
          f"{'  in reply to ' + detail['in_reply_to'] if detail['in_reply_to'] else ''}")
    print(f"  sent {when(detail['sent_at'])}, stored {when(detail['stored_at'])}")
    print(f"  status {detail['status']}{' ' + ','.join(detail['reason_codes']) if detail['reason_codes'] else ''}"
          f"{'  (' + detail['detail'] + ')' if detail.get('detail') else ''}")
    delivery = detail.get("delivery")
    if delivery:
        print(f"  delivery {delivery['state']}, attempts {delivery['attempts']}"
              f"{', receipted ' + when(delivery['receipted_at']) if delivery['receipted_at'] else ''}"
              f"{', error: ' + delivery['last_error'] if delivery['last_error'] else ''}")
    print(f"  sha256 {detail['sha256']}")
    print(f"  body ({detail['body_source']}):")
    if detail["body"] is not None:
        for line in json.dumps(detail["body"], ensure_ascii=False, indent=2).splitlines():
            print(f"    {line}")
    return 0 if signature["ok"] else 1


def show_outbox(args) -> int:
    ctx = _context(_config_for(args, args.agency), args.agency, create=False)
    if args.retry:
        try:
            relay.retry_failed(ctx, args.retry)
        except relay.NotRetryable as exc:
            raise CommandError(str(exc)) from None
        print(f"{args.retry} will be published again by the {args.agency} node's relay")
        return 0
    return _emit(queries.outbox(ctx), args.json, lambda r: (
        f"{r['message_id']}  {r['kind']:<28} to {r['recipient']:<16} {r['state']:<10} "
        f"attempts {r['attempts']}  receipt {r['status']}{' ' + ','.join(r['reason_codes']) if r['reason_codes'] else ''}"
        f"{'  error: ' + r['last_error'] if r['last_error'] else ''}"))


def show_quarantine(args) -> int:
    config = _config_for(args, args.agency)
    if args.broker or args.replay:
        return _dead_letters(config, args)
    ctx = _context(config, args.agency, create=False)
    when = time_format(args, config)
    return _emit(queries.quarantined(ctx), args.json, lambda r: (
        f"{when(r['received_at'])}  [{r['rule']}] {r['detail']}  ({r['size']} bytes, claimed sender "
        f"{r['claimed_sender'] or '?'}, sha256 {r['sha256'][:16]}…)"))


def _dead_letters(config, args) -> int:
    """The broker's quarantine queue of the agency, read with its own bus account."""
    queue = settings.topology(config).quarantine_queue_name(args.agency)
    try:
        uri = settings.bus_uri(config, args.agency)
        check_bus(config, args.agency, timeout=5)
    except (BrokerUnreachable, CredentialsError) as exc:
        raise CommandError(str(exc)) from None
    users = settings.broker_names(config)
    if args.broker:
        rows = [{"routing_key": d.routing_key, "reason": d.reason, "from_queue": d.from_queue, "count": d.count,
                 "content_type": d.content_type, "user_id": d.user_id, "size": len(d.body),
                 "sha256": hashlib.sha256(d.body).hexdigest()} for d in dead_letters.peek(uri, queue)]
        return _emit(rows, args.json, lambda r: (
            f"{r['reason'] or '?'} after {r['count']} deliveries  {r['routing_key']}  {r['size']} bytes "
            f"{r['content_type'] or '(no content type)'}  published by {r['user_id'] or '?'}  sha256 {r['sha256'][:16]}…"))

    office = args.agency in c.observer_codes(config)
    if office:
        from services.office import handlers as office_handlers
        from services.bootstrap import office_context
        context = office_context(config)
    else:
        context = _context(config, args.agency)

    def handle(letter):
        delivery = Delivery(letter.body, letter.content_type, letter.user_id,
                            users.agency_of_bus_user(letter.user_id, c.agency_codes(config)))
        if office:
            return office_handlers.observe(context, delivery)
        return receiving.receive(context, delivery).__dict__
    outcomes = dead_letters.replay(uri, queue, handle)
    for outcome in outcomes:
        print(f"  {outcome.get('status')}  {outcome.get('kind') or ''} {outcome.get('message_id') or ''}"
              f"{'  [' + outcome['rule'] + ']' if outcome.get('rule') else ''}")
    print(f"{args.agency}: replayed {len(outcomes)} dead letter(s) from {queue}; receipts go out with the node's relay")
    return 0


def show_trace(args) -> int:
    config = _config_for(args, args.agency)
    if args.agency:
        contexts = [_context(config, args.agency, create=False)]
    else:  # every node whose database is here; an agency without one never ran here
        contexts, missing = [], []
        for agency in node_agencies(config):
            try:
                contexts.append(offline_context(config, agency, create=False))
            except DatabaseMissing as exc:
                missing.append(str(exc))
            except DatabaseUnavailable as exc:
                raise CommandError(str(exc)) from None
            except CryptoError as exc:
                raise CommandError(f"[{exc.rule}] {exc.detail}") from None
        if not contexts:
            raise CommandError(f"no node database found here ({len(missing)} agencies checked, e.g. {missing[0]}); "
                               f"use --as AGENCY and check DATA_DIR and DATABASE_URL")
    agencies = [ctx.agency for ctx in contexts]
    traces = [queries.trace(ctx, args.referral_id) for ctx in contexts]
    traces = [t for t in traces if t["steps"]]
    if not traces:
        raise CommandError(f"referral {args.referral_id} is not in the database of {', '.join(agencies)}")
    steps = queries.merge_traces(traces)
    if args.json:
        json.dump({"referral_id": args.referral_id, "steps": steps,
                   "nodes": {t["node"]: {"state": t["state"], "audit_chain": t["audit_chain"]} for t in traces}},
                  sys.stdout, ensure_ascii=False, indent=2)
        print()
    else:
        when = time_format(args, config)
        print(f"referral {args.referral_id}")
        for step in steps:
            signature = "signature ok" if step["signature"]["ok"] else f"signature FAILED [{step['signature']['rule']}]"
            print(f"  {when(step['sent_at'])}  {step['sender']:>16} → {step['recipient']:<16} {step['kind']:<28} "
                  f"{step['status']:<9} {signature}  (seen by {', '.join(step['seen_by'])})")
        for node_trace in traces:
            chain = node_trace["audit_chain"]
            verdict = f"ok ({chain['entries']} entries)" if chain["ok"] else f"BROKEN: {chain['error']}"
            print(f"  {node_trace['node']}: state {node_trace['state']}, audit chain {verdict}")
    ok = all(s["signature"]["ok"] or s["status"] == "rejected" for s in steps) and \
        all(t["audit_chain"]["ok"] for t in traces)
    return 0 if ok else 1


def _shown_url(url: str) -> str:
    """A database URL fit for a log: its password hidden."""
    return make_url(url).render_as_string(hide_password=True)
