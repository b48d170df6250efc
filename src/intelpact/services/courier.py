"""The courier: pushes each partner's outbox at once, and pulls what was missed.

Push: after every write in this process (the node's ``stored`` event) and every
``push_interval`` seconds (writes by other processes), each partner's undelivered
outbox entries are POSTed to its inbox in
batches over mutual TLS; the partner's signed receipt marks them delivered and
becomes the dissemination record. A failure is retried with exponential
backoff. Pull: every ``interval`` seconds each partner's outbox is paged from
the persisted cursor, so a node that was down catches up by itself. Receipt is
idempotent, so an object that arrives both ways is stored once. Gossip: every
``gossip_interval`` seconds each partner's latest audit checkpoint is fetched and
witnessed (services/audit.py), so a partner that rewrites its history is caught, with
its new events about our objects, so one that leaves any out of its answers is caught
too (``watch_once``), in a thread for each partner beside the pushes and pulls.
Compromise reports, acknowledgements and closures (services/compromise.py) go first,
from their own queue, on the same retry path; one the partner refuses or fails on holds
back only what depends on it (``deliver_round``). A partner answering 429 (this node
sent it more requests than it takes: interfaces/federation.py) is asked again after the
``Retry-After`` it gave (at most ``max_backoff``), and nothing is counted as refused.
"""

from __future__ import annotations

import functools
import json
import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

import httpx

from ..crypto.tls import TlsError, pinned_client_context
from ..errors import IntelpactError
from ..jsonio import JsonError, parse_json
from ..store.base import (
    MAX_INTEGER,
    CompromiseMessage,
    KeptEvent,
    Notice,
    PeerRecord,
    StoreFull,
    StoreUnavailable,
    timestamp,
    utc_now,
)
from .audit import (
    KEPT_PAGE,
    AuditError,
    CheckpointsCrossed,
    EventsWithheld,
    PartnerAudit,
    encode_hash,
    operator,
    why_not_kept,
)
from .compromise import CompromiseError
from .federation import ClockSkew, FederationError, ProofNeeded, sign_request
from .node import Node

log = logging.getLogger("intelpact.courier")
TAXII = "application/taxii+json;version=2.1"
BATCH = 500
HELD = "the held query"  # before a report: which checkpoint of our log a partner holds
HELD_TRIES = 3  # a report answered 409 (the partner took a newer checkpoint): asked again
AUDIT_PAGE = 1000  # events a command asks a partner for at once: its federation API's most
# How many times a partner-audit answer may cross a newer checkpoint of the partner kept
# meanwhile (gossip) before the fetch gives up, without an alert (AuditLog.witness).
CROSSINGS = 3
# A partner's audit events are checked for about this long in one gossip round at most.
WATCH_SECONDS = 1.0
# A reclassification cut short in a serving node is completed by its courier once begun
# this many seconds ago (Controls.resume): one begun since may still be under way
RESUME_AFTER = 60.0
# A partner's answer must be read whole within this many seconds of its request being
# sent (httpx's timeout bounds each read, not the answer: one byte every few seconds would
# hold the courier's or the watch's thread for ever). 10 MB (max_content_length's default)
# in 120 s is about 85 KB a second.
ANSWER_SECONDS = 120.0
# While a partner keeps failing the same way, the courier's retries are logged at debug
# but for a warning this often (seconds): a partner down for a day is not 2,880 warnings
REMIND_EVERY = 600.0
_Item = TypeVar("_Item", Notice, CompromiseMessage)  # an item queued for a partner


class Courier:
    def __init__(self, node: Node, *, interval: float = 2.0, push_interval: float = 0.25,
                 max_backoff: float = 30.0, gossip_interval: float = 30.0,
                 answer_seconds: float = ANSWER_SECONDS) -> None:
        self.node = node
        self.answer_seconds = answer_seconds
        self.interval = interval
        self.gossip_interval = gossip_interval
        # Writers in other processes (the CLI, other workers) cannot set ``stored``:
        # the outbox is also checked this often (one indexed query per partner).
        self.push_interval = push_interval
        self.max_backoff = max_backoff
        self._stop = threading.Event()
        # the watch, and a delivery lane and a watch per partner
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._lanes: dict[str, threading.Event] = {}  # each partner's lane's wake-up
        # each thread its own clients (the watch runs beside the pushes and pulls)
        self._clients: dict[tuple[str, int], tuple[str, httpx.Client]] = {}
        self._released = True  # whether what the consents held cover is queued (start)
        # each thread's count of the partners' answers read whole (deliver_round)
        self._answers = threading.local()
        # each partner's and queue's count of retry passes (deliver_round): where the
        # next one starts among the items failing (_chosen)
        self._turns: dict[tuple[str, str], int] = {}

    # -- transport ----------------------------------------------------------------------
    def _client(self, peer: PeerRecord) -> httpx.Client:
        key = (peer.party, threading.get_ident())
        cached = self._clients.get(key)
        if cached is not None and cached[0] == peer.tls_fingerprint:
            return cached[1]
        try:  # trust the pinned certificate alone, not the CA its card's file may hold
            ctx = pinned_client_context(peer.tls_cert, peer.tls_fingerprint)
        except TlsError as exc:
            raise FederationError(f"{peer.party}: {exc.message}", hint=exc.hint) from None
        cfg = self.node.config
        if cfg.tls_cert is None or cfg.tls_key is None:
            raise FederationError("this node has no TLS certificate for mutual TLS",
                                  hint="re-run intelpact init; partners need it")
        ctx.load_cert_chain(str(cfg.tls_cert), str(cfg.tls_key))
        client = httpx.Client(verify=ctx, timeout=30.0, trust_env=False)
        if cached is not None:
            cached[1].close()  # the partner's certificate changed
        self._clients[key] = (peer.tls_fingerprint, client)
        return client

    def _request(self, peer: PeerRecord, method: str, target: str,
                 body: bytes = b"") -> httpx.Response:
        """Send a signed request to ``peer``; its answer, read whole only if it is within
        this node's ``max_content_length`` (as decoded): else AnswerTooLarge, the rest
        never read; and only if it is read whole within ``answer_seconds`` of sending:
        else httpx.ReadTimeout, as for a partner that does not answer (each read waits
        at most httpx's 30 s, so the bound is that much late at most). A partner's answer
        is bounded as what it sends in a request is: a pinned partner answering with
        gigabytes would otherwise exhaust this node's memory, and one dribbling it a byte
        at a time would hold the thread that asked (its lane, or its watch) for ever."""
        headers = {"Accept": TAXII, **sign_request(self.node.identity, method, target, body)}
        if body:
            headers["Content-Type"] = TAXII
        client = self._client(peer)
        request = client.build_request(method, peer.url + target, content=body or None,
                                       headers=headers)
        limit = self.node.config.max_content_length
        deadline = time.monotonic() + self.answer_seconds
        try:
            response = client.send(request, stream=True)
        except httpx.RemoteProtocolError:
            # A partner's listener closes the connection after answering 500 (uvicorn,
            # when the app raised: the answer is sent, then the connection closed), and
            # the next request on that kept-alive connection met "Server disconnected
            # without sending a response": the partner then looked unreachable, and the
            # round stopped behind the one item it failed on. Sent again once, on a new
            # connection (every request of the courier's may arrive twice: receipts are
            # idempotent, and a partner that disconnects again is unreachable).
            response = client.send(request, stream=True)
        try:
            chunks, size = [], 0
            for chunk in response.iter_bytes():
                if time.monotonic() > deadline:
                    raise httpx.ReadTimeout(
                        f"{peer.party}'s answer to {method} {target.split('?')[0]} was not "
                        f"read whole within {self.answer_seconds:g} s", request=request)
                size += len(chunk)
                if size > limit:
                    raise AnswerTooLarge(
                        f"{peer.party}'s answer to {method} {target.split('?')[0]} is over "
                        f"{limit:,} bytes (this node's max_content_length): not read",
                        hint="ask for less at a time, or raise max_content_length in "
                        "node.toml")
                chunks.append(chunk)
        finally:
            response.close()
        # decoded already: the rebuilt answer must not be decoded again
        kept = [(k, v) for k, v in response.headers.multi_items()
                if k.lower() not in ("content-encoding", "content-length")]
        self._answers.count = self._answered() + 1
        return httpx.Response(response.status_code, headers=kept, content=b"".join(chunks),
                              request=request)

    def _answered(self) -> int:
        """How many answers of partners this thread has read whole (``_request``)."""
        count: int = getattr(self._answers, "count", 0)
        return count

    # -- push ---------------------------------------------------------------------------
    def push_once(self, party: str, limit: int = BATCH) -> int:
        """Deliver one batch of ``party``'s outbox, of ``limit`` entries (more if they are
        all marking-definitions waiting for the object behind them); returns how many
        were acknowledged. An envelope of several objects that ``party`` answers 413 (over
        its max_content_length) raises EnvelopeTooLarge, nothing counted: push_all sends
        them again in smaller envelopes."""
        peer = self.node.federation.peers().get(party)
        if peer is None:
            return 0
        fed = self.node.federation
        held = fed.held_consents()  # the consent tokens: read once, if a row needs them
        size = limit
        while True:
            entries = self.node.store.pending(party, size)
            if not entries:
                return 0
            # the release decision again, as they leave; a marking-definition goes on its
            # own label or with an object here that cites it (one cut off with its object
            # waits, and a batch of only those reads on to it)
            sendable, later = fed.outgoing(party, entries, held, more=len(entries) >= size)
            if sendable or not later or size >= BATCH:
                break
            size = min(BATCH, size * 2)
        ids = [oid for oid, _ in entries if oid not in later]
        if not sendable:  # nothing goes: every entry counts, held back or not
            self.node.store.failed_attempt(party, [oid for oid, _ in entries])
            return 0
        fed.pushing(party, sendable)  # durable before it leaves
        # and decided again once recorded, on the rows as they are now: a reclassification
        # (Store.relabel) or recall committed since the first decision is seen here, and
        # one committed after the record finds it and tells the partner
        now = dict(self.node.store.pending(party, size))
        sendable, _ = fed.outgoing(party, [(oid, now[oid]) for oid, _ in sendable
                                           if oid in now], held)
        if not sendable:
            self.node.store.failed_attempt(party, ids)
            return 0
        if self.node.pinned_changed():  # decided under a text no longer pinned
            raise AgreementChanged(f"nothing more goes to {party} under agreement "
                                   f"{self.node.agreement.id} version "
                                   f"{self.node.agreement.version}: another text was "
                                   "pinned, and the node switches to it")
        tokens = fed.consents_for(party, [row for _, row in sendable], held)
        body = ('{"objects":[' + ",".join(row.body for _, row in sendable) + "]"
                + (',"x_intelpact_consents":' + json.dumps(tokens) if tokens else "")
                + "}").encode()
        try:
            response = self._request(peer, "POST", "/federation/collections/inbox/objects/",
                                     body)
        except httpx.HTTPError as exc:
            raise _unreachable(peer, exc) from None
        if response.status_code == 413 and len(sendable) > 1 and limit > 1:
            raise EnvelopeTooLarge(f"{party} refused an envelope of {len(sendable)} objects "
                                   f"as too large: {_description(response)}")
        if response.status_code != 200:
            if _refusal(response):
                self.node.store.failed_attempt(party, ids)
            raise _failed(response, f"{party} refused the delivery: {response.status_code} "
                                    f"{_description(response)}")
        # unread, nothing is marked delivered: the entries stay queued, tried again
        status = _read(party, response, "the push", whole=True)
        acknowledged = {(row.object_id, row.body_hash) for row in fed.check_receipt(
            party, status.get("x_intelpact_receipt"), [row for _, row in sendable])}
        done = [oid for oid, row in sendable if (row.object_id, row.body_hash) in acknowledged]
        refused = [oid for oid in ids if oid not in done]
        receipt = json.dumps(status["x_intelpact_receipt"], sort_keys=True)
        # a third party's objects went on with consent: their originators are told, in
        # the transaction that marks them delivered
        onward = self.node.consents.onward(party, [row for oid, row in sendable
                                                   if oid in done], "push", receipt) \
            if tokens else ([], [])
        self.node.store.mark_delivered(party, done, timestamp(utc_now()), receipt, onward)
        if refused:
            self.node.store.failed_attempt(party, refused)
            failures = status.get("failures")
            for failure in failures[:5] if isinstance(failures, list) else []:
                if isinstance(failure, dict):  # the reasons are only logged
                    log.warning("%s refused %s: %s", party, failure.get("id"),
                                failure.get("message"))
        return len(done)

    def announce_keys(self, party: str) -> None:
        """Deliver this node's key-rotation announcements before anything it signs."""
        peer = self.node.federation.peers().get(party)
        if peer is None:
            return
        for announcement_id, body in self.node.store.undelivered_announcements(party):
            sent = body.encode()
            for _ in range(CROSSINGS):
                response = self._request(peer, "POST", "/federation/keys", sent)
                held = _held(response)
                if held is None:
                    break
                # the partner holds a checkpoint of our log older than the old key's final
                # one: it witnesses that one with a proof from what it holds (signed notes
                # and hashes: the proof needs no signature of its own)
                sent = self._with_proof(body, held)
            if response.status_code != 200:
                raise _failed(response, f"{party} refused the key rotation: "
                                        f"{response.status_code} {_description(response)}")
            self.node.store.announcement_delivered(announcement_id, party,
                                                   timestamp(utc_now()))

    def _with_proof(self, body: str, held: int) -> bytes:
        """The announcement ``body`` with a consistency proof from our log's tree of
        ``held`` events to its final checkpoint (``last_size``)."""
        announcement = json.loads(body)
        final = announcement.get("last_size")
        if not isinstance(final, int) or not 0 < held < final:
            raise FederationError(f"the partner asks for a proof from {held} events to the "
                                  f"final checkpoint of {final}: none can be made")
        proof = self.node.audit.tree.consistency(held, final)
        announcement["consistency"] = {"from": held,
                                       "proof": [encode_hash(h) for h in proof]}
        return json.dumps(announcement).encode()

    def push_all(self, party: str) -> int:
        """Deliver ``party``'s key announcements, then its outbox, batch after batch; an
        envelope too large for ``party`` is sent again with half as many objects, and the
        batches stay that small for the rest of the round."""
        self.announce_keys(party)
        total, limit = 0, BATCH
        while True:
            try:
                n = self.push_once(party, limit)
            except EnvelopeTooLarge as exc:
                log.debug("federation with %s: %s; sending fewer at a time", party, exc)
                limit = max(1, limit // 2)
                continue
            total += n
            if n == 0:
                return total

    def deliver_round(self, party: str, *, pull: bool = False, again: bool = True) -> bool:
        """One round with ``party``: its compromise messages, then its notices (recalls
        before any more objects), then its objects; then the messages and notices that
        failed at their last try (and those queued behind them), and with ``pull`` its
        outbox pulled. What fails of one message or notice holds back only what depends
        on it (:class:`_Round` says when a failure stops the round): a refusal (Refused,
        counted: given up after 20) or a failure that is not one (a 5xx for ever on that
        one item, a receipt that does not verify) is raised once the rest has gone, so
        the caller backs off and the item is tried again the next round. Before, one
        notice a partner answered 500 every time stopped every round at it: a recall of
        something else queued after it, and every object, waited for ever. The partner
        unreachable or throttling (429), or a push or pull failing, stops the round at
        once. Without ``again``, those that failed before are not tried (the lane sends
        what is new between their retries). Raises HeldBack when messages or notices
        failed and everything else went. Returns whether the round reached ``party``:
        whether it asked it anything and had its answers. A round with nothing to send
        and no pull asks nothing: it says nothing of whether the partner is reachable
        (the caller's run of failures goes on)."""
        answered = self._answered()
        state = _Round()
        self.deliver_compromise(party, again=False, state=state)
        self.deliver_notices(party, again=False, state=state)
        pushed = self._answered()
        self.push_all(party)
        if self._answered() > pushed:  # the push was answered well, or it raised
            state.answered_well()
        if again:
            self.deliver_compromise(party, again=True, state=state)
            self.deliver_notices(party, again=True, state=state)
        if pull:
            self.pull_once(party)
        try:
            state.end()
        except FederationError as exc:
            raise HeldBack(exc.message, hint=exc.hint) from exc
        return self._answered() > answered

    # -- compromise reports ------------------------------------------------------------
    def deliver_compromise(self, party: str, *, again: bool | None = None,
                           state: _Round | None = None) -> int:
        """Deliver ``party``'s queued compromise reports, acknowledgements and closures,
        oldest first; each is marked delivered only with the partner's verified signed
        receipt. Before a report, the partner is asked which checkpoint of our log it
        holds, so the report carries a proof from it. A message refused (counted: refused
        20 times it stops being sent, and `compromise list` shows why) or failing (not
        counted) holds back the later messages of its report only; the first failure or
        refusal is raised at the end (:class:`_Round`: a failure may stop the queue at
        once). ``again``: only those that failed at their last try and those behind
        them (True), or only the others (False); both by default, these last. Key
        rotation announcements go first: requests are signed with the current key.
        Returns how many were delivered."""
        peer = self.node.federation.peers().get(party)
        if peer is None:
            return 0
        try:
            self.announce_keys(party)
        except httpx.HTTPError as exc:
            raise _unreachable(peer, exc) from None
        round_ = state or _Round()
        done = 0
        for message in _chosen(self.node.store.pending_compromise(party, BATCH),
                               lambda m: m.report_id, again,
                               self._turn(party, "compromise", again)):
            key = ("report", message.report_id)
            if key in round_.behind or ("message", str(message.message_id)) in round_.tried:
                continue
            round_.tried.add(("message", str(message.message_id)))
            try:
                self._deliver_message(peer, message)
            except (Unreachable, RateLimited):
                raise
            except FederationError as exc:
                round_.behind.add(key)
                round_.failed(exc, before=message.error is not None)
                continue
            round_.answered_well()
            done += 1
        if state is None:
            round_.end()
        return done

    def _deliver_message(self, peer: PeerRecord, message: CompromiseMessage) -> None:
        """Send one compromise message and take its receipt; else record why not and
        raise: Unreachable, Refused (counted), or FederationError (RateLimited)."""
        party = peer.party
        try:
            response = self._send_compromise(peer, message)
        except httpx.HTTPError as exc:
            self.node.store.compromise_failed(message.message_id,
                                              f"{party} unreachable: {exc}", False)
            raise _unreachable(peer, exc) from None
        except FederationError as exc:  # the held size refused or unreadable
            self.node.store.compromise_failed(message.message_id, exc.message, False)
            raise
        if response.status_code != 200:
            reason = f"{response.status_code} {_description(response)}"
            # 409: the partner's state kept moving under the request (_send_compromise
            # asked again): the next round tries again, no refusal
            counted = response.status_code != 409 and _refusal(response)
            said = "refused" if counted else "failed on"
            self.node.store.compromise_failed(message.message_id,
                                              f"{party} {said.split()[0]}: {reason}",
                                              counted)
            raise _failed(response, f"{party} {said} compromise {message.kind} "
                                    f"{message.report_id}: {reason}", counted=counted)
        try:
            self.node.compromise.delivered(party, message, _read(
                party, response, f"compromise {message.kind} {message.report_id}"))
        except FederationError as exc:  # a receipt unreadable, unsigned or not for it
            self.node.store.compromise_failed(message.message_id, exc.message, False)
            raise

    def _send_compromise(self, peer: PeerRecord, message: CompromiseMessage) -> httpx.Response:
        """POST ``message`` to ``peer``: a report with a proof from the checkpoint of our
        log the partner holds, asked first. A partner that took a newer one between the
        question and the report (its audit watch, gossip) answers 409: asked again at
        once, HELD_TRIES times in all, and its last answer returned."""
        target = "/federation/compromise"
        if message.kind != "report":
            return self._request(peer, "POST", target,
                                 self.node.compromise.envelope(message, 0))
        for _ in range(HELD_TRIES):
            asked = self._request(peer, "POST", target, b'{"type":"held"}')
            if asked.status_code != 200:
                raise _failed(asked, f"{peer.party} refused: {asked.status_code} "
                                     f"{asked.text[:300]}")
            held = _held_size(peer.party, _read(peer.party, asked, HELD, whole=True))
            response = self._request(peer, "POST", target,
                                     self.node.compromise.envelope(message, held))
            if response.status_code != 409:
                break
        return response

    # -- originator controls -------------------------------------------------------------
    def deliver_notices(self, party: str, *, again: bool | None = None,
                        state: _Round | None = None) -> int:
        """Deliver ``party``'s queued recalls, destruction receipts and reclassifications,
        oldest first; each is delivered once the partner's signed receipt verifies. A
        notice refused (counted: refused 20 times it stops being sent) or failing (not
        counted: a 5xx, a receipt that does not verify) holds back only the later notices
        about the same object, so each object's notices arrive in order and a recall of
        something else goes all the same; the first failure or refusal is raised at the
        end (:class:`_Round`: the partner unreachable or throttling, or failing twice in
        a row, stops it at once). ``again`` as for :meth:`deliver_compromise`. Returns
        how many were delivered."""
        peer = self.node.federation.peers().get(party)
        if peer is None:
            return 0
        round_ = state or _Round()
        done = 0
        for notice in _chosen(self.node.store.pending_notices(party, BATCH),
                              lambda n: n.object_id or "", again,
                              self._turn(party, "notices", again)):
            key = ("object", notice.object_id or "")  # about no object: in order among them
            if key in round_.behind or ("notice", notice.notice_id) in round_.tried:
                continue
            round_.tried.add(("notice", notice.notice_id))
            try:
                self._deliver_notice(peer, notice)
            except (Unreachable, RateLimited):
                raise
            except FederationError as exc:
                round_.behind.add(key)
                round_.failed(exc, before=notice.error is not None)
                continue
            round_.answered_well()
            done += 1
        if state is None:
            round_.end()
        return done

    def _turn(self, party: str, queue: str, again: bool | None) -> int:
        """The number of this retry pass (``again``) of ``party``'s ``queue``: each starts
        at the next item failing, so that a round that stops at its second failure (none
        answered well: _Round) does not retry the same two every time; 0 otherwise."""
        if not again:
            return 0
        turn = self._turns.get((party, queue), 0)
        self._turns[(party, queue)] = turn + 1
        return turn

    def _deliver_notice(self, peer: PeerRecord, notice: Notice) -> None:
        """Send one notice and take its receipt; else record why not and raise:
        Unreachable, Refused (counted), or FederationError (RateLimited)."""
        party = peer.party
        try:
            self.announce_keys(party)
            response = self._request(peer, "POST", "/federation/notices",
                                     notice.body.encode())
        except httpx.HTTPError as exc:
            self.node.store.notice_failed(notice.notice_id, f"{party} unreachable: {exc}",
                                          refused=False)
            raise _unreachable(peer, exc) from None
        if response.status_code != 200:
            reason = f"{response.status_code} {_description(response)}"
            counted = _refusal(response)
            said = "refused" if counted else "failed on"
            self.node.store.notice_failed(notice.notice_id,
                                          f"{party} {said.split()[0]}: {reason}",
                                          refused=counted)
            raise _failed(response, f"{party} {said} {notice.kind} notice "
                                    f"{notice.notice_id}: {reason}", counted=counted)
        try:
            receipt = self.node.controls.check_receipt(
                party, notice, _read(party, response, f"{notice.kind} notice "
                                                      f"{notice.notice_id}"))
        except FederationError as exc:  # a receipt unreadable, unsigned or not for it
            self.node.store.notice_failed(notice.notice_id, exc.message, refused=False)
            raise
        self.node.store.notice_delivered(notice.notice_id, timestamp(utc_now()), receipt)

    def _fetch(self, peer: PeerRecord, target: str, what: str) -> Any:
        """GET ``target`` from ``peer``: its JSON answer, or FederationError saying that
        it cannot be reached or that it refused ``what``; BadAnswer if the answer is not
        one strict JSON text (jsonio.parse_json)."""
        try:
            response = self._request(peer, "GET", target)
        except httpx.HTTPError as exc:
            raise _unreachable(peer, exc) from None
        if response.status_code != 200:
            raise _failed(response, f"{peer.party} refused {what}: {response.status_code} "
                                    f"{response.text[:300]}")
        return _read(peer.party, response, what)

    # -- pull ---------------------------------------------------------------------------
    def pull_once(self, party: str, limit: int = BATCH) -> int:
        """Fetch and receive what ``party`` released to us, a page of up to ``limit`` at a
        time, until it says there is no more (or this courier halts); returns how many
        were taken. A page over this node's ``max_content_length`` is asked for again
        with half as many objects; one object over it stops the pull with the reason.
        A page that says there is more but does not move the cursor on stops it too."""
        peer = self.node.federation.peers().get(party)
        if peer is None:
            return 0
        received = 0
        while True:
            cursor = self.node.store.pull_cursor(party)
            try:
                page = _whole(party, "the pull", self._fetch(
                    peer, f"/federation/collections/outbox/objects/?next={cursor}&limit={limit}",
                    "the pull"))
            except AnswerTooLarge:
                if limit == 1:
                    raise
                limit = max(1, limit // 2)
                continue
            # the whole page checked before any of it is taken: a page refused takes nothing
            # (the consent tokens are checked one by one as they are: Federation.receive)
            objects, more = page.get("objects", []), page.get("more", False)
            if not isinstance(objects, list):
                raise _bad_answer(party, "the pull", "its 'objects' is not a list")
            if not isinstance(more, bool):
                raise _bad_answer(party, "the pull", "its 'more' is not true or false")
            after = _outbox_cursor(party, page["next"]) if page.get("next") else cursor
            if objects:
                collection = self.node.default_collection().collection_id
                results, _ = self.node.federation.receive(party, collection, objects,
                                                          page.get("x_intelpact_consents", []))
                received += sum(1 for r in results if r.ok)
                self.node.stored.set()
            if after != cursor:
                self.node.store.set_pull_cursor(party, after)
            if not more or self._stop.is_set():
                return received
            if after <= cursor:
                raise FederationError(f"{party}'s outbox page says there is more, but does "
                                      f"not move on from {cursor}: the pull stops here")

    # -- partner audit and gossip ------------------------------------------------------------
    def partner_audit(self, party: str, *, after: int = -1, limit: int = BATCH,
                      expect: int | None = None) -> PartnerAudit:
        """Ask ``party`` for its events about our objects after leaf ``after``. Its
        checkpoint is witnessed (gossip) and every event proven included in it, and
        numbered next (from ``expect``; from 0 when reading from the start of the log:
        AuditLog.check_partner_events). An answer that crossed a newer checkpoint kept
        meanwhile (another fetch) is asked for again. ``limit`` 0 asks for the
        checkpoint only (gossip)."""
        peer = self.node.federation.peers().get(party)
        if peer is None:
            raise FederationError(f"{party} is not a pinned partner",
                                  hint="pin it first: intelpact peer add DIR CARDFILE")
        audit = self.node.audit
        keys = self.node.federation.log_keys(party)
        if expect is None and after < 0:
            expect = 0
        crossed = 0
        while True:
            known = self.node.store.partner_size(party)
            try:
                answer = self._fetch(
                    peer, f"/federation/audit?after={after}&limit={limit}&known={known}",
                    "the audit request")
            except AnswerTooLarge:  # a page of large events (reads naming many objects)
                if limit <= 1:
                    raise
                limit //= 2
                continue
            except BadAnswer as exc:  # refused as any answer that does not verify
                raise AuditError(exc.message, hint=exc.hint) from None
            try:
                size, root = audit.witness(party, keys, answer, known=known)
            except CheckpointsCrossed:
                crossed += 1  # another fetch kept a newer checkpoint meanwhile: ask again
                if crossed == CROSSINGS:
                    raise
                continue
            if not limit:
                return PartnerAudit(size, [], False, expect)
            return audit.check_partner_events(party, keys, size, root, answer, expect=expect)

    def partner_events(self, party: str, *, limit: int, before: int | None = None,
                       read_on: bool = True, objects: Sequence[str] = (),
                       kinds: Sequence[str] = (),
                       advance: Callable[[int], None] = lambda n: None) -> PartnerAudit:
        """``party``'s events about our objects from the start of its log, as this node
        keeps them (Store.partner_events), once the watch has read on to now
        (``read_on``; false: without asking ``party``, and ``size`` is of the largest
        checkpoint of it kept): at most ``limit`` of those naming one of ``objects``
        and of one of ``kinds`` (each found by what it is filed under; default: all),
        or, with ``before``, of those below leaf ``before``. Each was proven and
        numbered when it was read, and each returned is checked again here
        (AuditLog.verify_kept). ``more``: there are more than those; ``expect``: how many
        numbered events the range up to them should hold, and ``missing``: how many of
        those are not kept (left out of ``party``'s answers, alerted as
        ``events-withheld`` when the watch met them: ``alerted``, or deleted here)."""
        store = self.node.store
        if not read_on:
            return self._kept(party, store.partner_size(party), limit, before, objects,
                              kinds, caught_up=True)
        read = 0

        def enough(after: int, page: int) -> bool:
            nonlocal read
            read += page
            return (not objects and not kinds and read >= limit) or \
                (before is not None and after >= before - 1)

        size, more, after = self.read_on(party, enough, page=AUDIT_PAGE, advance=advance)
        caught_up = not more or (before is not None and after >= before - 1)
        return self._kept(party, size, limit, before, objects, kinds, caught_up=caught_up)

    def _kept(self, party: str, size: int, limit: int, before: int | None,
              objects: Sequence[str], kinds: Sequence[str], *, caught_up: bool
              ) -> PartnerAudit:
        """partner_events from what is kept, the reading done (``caught_up``: to now, or
        past ``before``): a page at a time, so memory holds only the events returned;
        whether any is missing, from how many numbered events are kept below the end of
        the range."""
        store = self.node.store
        after, expect = store.partner_audit_cursor(party)  # before what is kept: a watch
        if before is None:  # in another thread keeps more meanwhile, with its cursor
            before = after + 1
        shown: list[KeptEvent] = []
        start, bound = -1, before
        while page := store.partner_events(
                party, after=start, before=before, objects=objects, kinds=kinds,
                limit=min(KEPT_PAGE, limit + 1 - len(shown))):
            for kept in page:
                if len(shown) == limit:  # one more than asked: the range ends before it
                    bound = kept.index
                    break
                shown.append(kept)
            if bound < before:
                break
            start = page[-1].index
        events, problems = self.node.audit.verify_kept(
            party, self.node.federation.log_keys(party), shown)
        if problems:
            raise AuditError(f"{len(problems)} of {party}'s audit events kept here do not "
                             f"verify; the first: {problems[0]}",
                             hint=f"the rows this node's database keeps of {party}'s events "
                             "were changed: tell your security officer (intelpact audit "
                             "verify DIR names every one)")
        nxt = store.partner_events(party, after=bound - 1, limit=1)
        expect = (nxt[0].seq or 0) if nxt else expect
        missing, alerted = (0, 0) if expect is None else \
            self.node.audit.not_kept(party, expect, bound)
        return PartnerAudit(size, events, bound < before or not caught_up, expect, shown,
                            missing=missing, alerted=alerted)

    def events_before(self, party: str, before: int, objects: Sequence[str] = (),
                      advance: Callable[[int], None] = lambda n: None) -> PartnerAudit:
        """``party``'s events about our objects below leaf ``before`` naming one of
        ``objects``, all of them (partner_events): what a compromise report's history is
        checked against. Events not kept, which ``party`` left out of its answers
        (alerted as ``events-withheld`` when the watch met them) or which were deleted
        here, would leave the check unsure: AuditError says so."""
        events = self.partner_events(party, limit=before, before=before, objects=objects,
                                     advance=advance)
        if events.missing:
            raise AuditError(f"{events.missing} of {party}'s events about our objects below "
                             f"leaf {before} are not kept here: "
                             f"{why_not_kept(party, events.missing, events.alerted)}; what "
                             "they were cannot be checked",
                             hint="intelpact audit alerts DIR; intelpact audit verify DIR "
                             "names the numbers")
        return events

    def gossip_once(self, party: str) -> int:
        """Fetch and witness ``party``'s latest checkpoint; returns its tree size."""
        return self.partner_audit(party, limit=0).size

    def watch_once(self, party: str, seconds: float = WATCH_SECONDS) -> int:
        """Gossip, and check ``party``'s events about our objects since the last round
        (``read_on``), so that an event left out of its answers raises the alert
        ``events-withheld`` within a round; each gap is alerted once, the round after
        goes on past it. A page at a time for about ``seconds`` at most (a backlog takes
        several rounds, and a stop is not held up). Returns the tree size
        of its checkpoint."""
        stop = time.monotonic() + seconds
        return self.read_on(party, lambda after, page: time.monotonic() > stop)[0]

    def read_on(self, party: str, enough: Callable[[int, int], bool], *, page: int = BATCH,
                advance: Callable[[int], None] = lambda n: None) -> tuple[int, bool, int]:
        """Read ``party``'s events about our objects on from where the watch stopped
        (Store.partner_audit_cursor), a page at a time, each page proven and numbered
        (partner_audit), and kept with the cursor moved past it in one transaction:
        every event below the cursor is kept here, or was alerted as withheld. Stops when
        there are no more, or when ``enough(leaf read to, events in the page)``; a page
        that says there is more but does not move past the leaf read to stops it
        (AuditError); when ``serve`` stops, Unreachable says so (not a failure of the
        partner's). Returns the tree size of the last checkpoint, whether there are more,
        and the leaf read to."""
        after, expect = self.node.store.partner_audit_cursor(party)
        while True:
            if self._stop.is_set():
                raise Unreachable(f"stopping: {party}'s audit events were not all read")
            try:
                got = self.partner_audit(party, after=after, limit=page, expect=expect)
            except EventsWithheld as exc:  # keep what came before the gap, and go past it
                resume, moved = exc.resume
                self._keep(party, (after, expect), after if resume is None else resume,
                           moved, exc.kept)
                raise
            except AnswerTooLarge as exc:  # one event past our limit: gossip all the same
                self.gossip_once(party)
                raise AuditError(f"{party}'s audit events about our objects are not "
                                 f"checked past leaf {after}: {exc.message}",
                                 hint="raise server.max_content_length on this node"
                                 ) from None
            if got.more and not got.events:
                raise AuditError(f"{party}'s audit answer says there is more but holds no "
                                 "events: the reading stops here")
            if got.more and got.events[-1]["index"] <= after:
                # as pull_once's cursor: asked again from the same leaf, such a partner
                # answered the same page for ever (enough() is never true for a search
                # by object or kind, nor for a compromise history check below its end)
                raise AuditError(f"{party}'s audit answer says there is more, but does not "
                                 f"move on from leaf {after}: the reading stops here")
            was = after, expect
            if got.events:
                after = got.events[-1]["index"]
            expect = expect if got.expect is None else got.expect
            self._keep(party, was, after, expect, got.kept)
            advance(len(got.events))
            if not got.more or enough(after, len(got.events)):
                return got.size, got.more, after

    def _keep(self, party: str, was: tuple[int, int], after: int, expect: int,
              kept: Sequence[KeptEvent]) -> None:
        """Keep ``kept`` and move the watch of ``party`` on from ``was`` to leaf ``after``
        and number ``expect``, in one transaction with the ``partner-audit-kept`` event
        that records the move in this node's log: what anchors the cursor, so that the
        evidence kept below it cannot be deleted with it unseen (AuditLog.check_kept). A
        round that moves nothing (``was``) records nothing, nor does one a watch in
        another process overtook (the store decides, under its write lock)."""
        audit = () if (after, expect) == was else (self.node.audit.event(
            "partner-audit-kept", party=party, after=after, expect=expect, kept=len(kept)),)
        self.node.store.set_partner_audit_cursor(party, after, expect, timestamp(utc_now()),
                                                 kept, audit=audit)

    # -- running --------------------------------------------------------------------------
    def start(self) -> None:
        self._released = self._release_held(self.interval)
        for target, name in ((self._run, "intelpact-courier"),
                             (self._watch, "intelpact-audit-watch")):
            self._spawn(target, name)

    def _spawn(self, target: Callable[[], None], name: str) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        with self._lock:
            self._threads.append(thread)
        thread.start()

    def halt(self) -> None:
        """Stop at the next step, without waiting: what is not yet sent stays in the
        outbox for when this node serves again. A send that fails from now on is not
        logged as a failure: the partner may be stopping too."""
        self._stop.set()
        self.node.stored.set()
        for wake in list(self._lanes.values()):
            wake.set()

    def stop(self) -> None:
        """Halt, and wait (10 s in all) for the threads: a lane in the middle of a request
        ends with it (the client's timeout)."""
        self.halt()
        deadline = time.monotonic() + 10
        with self._lock:
            threads = list(self._threads)
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        for _, client in list(self._clients.values()):
            client.close()

    def __enter__(self) -> Courier:
        """A courier for a command or a test: ``with Courier(node) as courier:`` stops it
        (its threads, if started, and its clients) however the block ends."""
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _release_held(self, delay: float) -> bool:
        """Queue what a crash may have cut from its consent (Consents.release_held: the
        release decision decides, with the consents held), and re-issue under the current
        key the consents this node gave that a key rotation cut short before it did
        (Consents.reissue). Whether it was done: a failure
        is logged with its reason, never raised, so ``serve`` starts all the same and the
        courier tries again ``delay`` seconds later (the consents stay kept)."""
        try:
            self.node.consents.reissue()
            self.node.consents.release_held()
        except Exception as exc:  # noqa: BLE001 - tried again; nothing was released
            (log.warning if isinstance(exc, IntelpactError) else log.exception)(
                "federation: could not re-issue the consents given under the current key, "
                "or queue what the consents held cover (retry in %.1fs): %s", delay, exc)
            return False
        return True

    def _resume_reclassifications(self) -> None:
        """Complete a reclassification of ours that a failed write cut short in this
        process after its new version was published (Controls.resume): one begun more
        than RESUME_AFTER seconds ago, so as not to complete one still under way. A
        failure is logged and tried again at the next pull's time."""
        try:
            if done := self.node.controls.resume(begun_before=RESUME_AFTER):
                log.info("federation: completed %d reclassification(s) cut short", done)
        except Exception as exc:  # noqa: BLE001 - tried again; the intent stays kept
            (log.warning if isinstance(exc, IntelpactError) else log.exception)(
                "federation: could not complete a reclassification cut short (retry in "
                "%.1fs): %s", self.interval, exc)

    def catch_up(self, parties: Iterable[str]) -> int:
        """Queue for each partner what the agreement's state held back, once the text
        pinned is in force (Federation.catch_up: once per partner and date of entry
        into force, so a round costs nothing once done; the day of entry into force is
        noticed at the first round of that day, a text pinned in force at the first
        round of the process serving it). How many entries were queued. A failure is
        logged and tried again at the next pull's time."""
        total = 0
        for party in parties:
            try:
                total += self.node.federation.catch_up(party) or 0
            except Exception as exc:  # noqa: BLE001 - tried again; nothing was queued
                (log.warning if isinstance(exc, IntelpactError) else log.exception)(
                    "federation: could not queue for %s what the agreement's state held "
                    "back (retry in %.1fs): %s", party, self.interval, exc)
        if total:
            self.node.stored.set()
        return total

    def terminate(self) -> int | None:
        """Do what the pinned text's termination requires once its date has come
        (Controls.terminate: once per node; the day is noticed at the first round of that
        day, or of the first process serving after it). How many objects were destroyed,
        None when nothing was due or done already. A failure is logged and tried again at
        the next pull's time (what was destroyed stays destroyed; the rest goes then)."""
        agreement = self.node.agreement
        try:
            count = self.node.controls.terminate()
        except Exception as exc:  # noqa: BLE001 - tried again; nothing is recorded done
            (log.warning if isinstance(exc, IntelpactError) else log.exception)(
                "federation: could not do what agreement %s's termination requires "
                "(%s; retry in %.1fs): %s", agreement.id, agreement.rules.on_termination,
                self.interval, exc)
            return None
        if count is not None:
            log.info("agreement %s terminated on %s (UTC): destroyed %d object(s) holding "
                        "partners' material (%s); the originators of those received are "
                        "told", agreement.id, agreement.terminated, count,
                        agreement.rules.on_termination)
            self.node.stored.set()  # the destroyed notices, to their originators
        return count

    def _run(self) -> None:
        """Wake each partner's lane when something is stored (and every
        ``push_interval``), starting one for each partner as it is pinned; and, on the
        pull's time, queue what a crash cut from its consent, complete the
        reclassifications cut short and queue what the agreement's state held back
        (:meth:`catch_up`). Each partner has its lane (:meth:`_lane`): one that
        answers slowly, or not at all (up to the client's 30 s a request), holds up
        only its own deliveries, never another partner's."""
        lanes = self._lanes
        failing = _Failures()
        last_pull = 0.0
        release_wait, release_failed = self.interval, time.monotonic()
        while not self._stop.is_set():
            self.node.stored.wait(self.push_interval)
            self.node.stored.clear()
            now = time.monotonic()
            if not self._released and _due(now, release_failed, release_wait):
                release_wait = min(self.max_backoff, release_wait * 2)
                self._released = self._release_held(release_wait)
                release_failed = now
            if self.node.pinned_changed():  # `serve` opens the node again: nothing here
                self._stop.wait(self.push_interval)
                continue
            catch_up = _due(now, last_pull, self.interval)
            if catch_up:
                self.terminate()
                self._resume_reclassifications()
                last_pull = now
            try:
                parties = list(self.node.federation.peers())
            except (StoreFull, StoreUnavailable) as exc:  # this node's store: it comes back
                log.warning("federation: %s (retry in %.1fs)", exc, self.interval)
                self._stop.wait(self.interval)
                continue
            if catch_up:
                self.catch_up(parties)
            for party in parties:
                if party not in lanes and not self._stop.is_set():
                    lanes[party] = threading.Event()
                    self._spawn(functools.partial(self._lane, party, lanes[party], failing),
                                f"intelpact-courier-{party}")
            for wake in lanes.values():
                wake.set()

    def _lane(self, party: str, wake: threading.Event, failing: _Failures) -> None:
        """Deliver to ``party``, round after round (:meth:`deliver_round`, its outbox
        pulled every ``interval``), when woken or every ``push_interval``; a failed round
        is tried again after a backoff that doubles up to ``max_backoff`` (a 429: after
        its Retry-After), logged as :class:`_Failures` says. Only a round that reached
        ``party`` ends a run of failures (its backoff, and "reached again"): one that
        asked it nothing, between pulls with nothing queued, leaves the run as it is.
        After a round that went but for messages or notices failing (HeldBack), what is
        new still goes at once, in rounds without them, and only their retries wait out
        the backoff: before, one notice failing for ever delayed every object by up to
        ``max_backoff``, for as long as it failed; the backoff, and the run of failures,
        are ended only by a whole round."""
        backoff: float | None = None  # the wait before the next try, while failing
        held = False  # the last failed round went, but for messages or notices failing
        failed_at = last_pull = 0.0
        while not self._stop.is_set():
            wake.wait(self.push_interval)
            wake.clear()
            now = time.monotonic()
            whole = backoff is None or _due(now, failed_at, backoff)
            if self._stop.is_set() or not (whole or held):
                continue
            if self.node.pinned_changed():  # nothing under a text no longer pinned
                continue
            pull = _due(now, last_pull, self.interval)
            try:
                if self.deliver_round(party, pull=pull, again=whole) and whole:
                    backoff, held = None, False
                    if back := failing.recovered(party):
                        log.info("federation with %s: %s", party, back)
            except Exception as exc:  # noqa: BLE001 - the courier outlives any one failure
                if self._stop.is_set():
                    log.debug("federation with %s while stopping: %s", party, exc)
                    return
                if isinstance(exc, HeldBack) and not whole and backoff is not None:
                    # a new item failed between the retries: they keep their time (new
                    # ones failing often must not put the retries off for ever)
                    delay = max(0.0, failed_at + backoff - now)
                else:
                    held = isinstance(exc, HeldBack)
                    delay = min(self.max_backoff, (backoff or 0.25) * 2)
                    if isinstance(exc, RateLimited):  # as the partner asks, not doubled
                        delay = min(self.max_backoff, exc.retry_after)
                    backoff, failed_at = delay, now
                level, still = failing.failed(party, exc, now)
                if isinstance(exc, _RETRIED):
                    log.log(level, "federation with %s: %s%s (retry in %.1fs)", party,
                            still, exc, delay)
                else:
                    log.log(level, "federation with %s: %sfailed (retry in %.1fs)", party,
                            still, delay, exc_info=level > logging.DEBUG)
            if pull:
                last_pull = now

    def _watch(self) -> None:
        """Every ``gossip_interval`` seconds, start a watch (:meth:`_watch_lane`) for each
        partner pinned since, and check the compromise reports received
        (:meth:`check_reports`), in a thread of its own: the reading never holds up a
        push."""
        watched: set[str] = set()
        while not self._stop.is_set():
            try:
                parties = self.node.federation.peers()
            except (StoreFull, StoreUnavailable) as exc:
                log.warning("audit watch: %s (retry in %.1fs)", exc, self.gossip_interval)
                parties = {}
            for party in parties.keys() - watched:
                if not self._stop.is_set():
                    watched.add(party)
                    self._spawn(functools.partial(self._watch_lane, party),
                                f"intelpact-audit-watch-{party}")
            self.check_reports()
            self._stop.wait(self.gossip_interval)

    def _watch_lane(self, party: str) -> None:
        """Every ``gossip_interval`` seconds, gossip with ``party`` and check its new
        events about our objects (``watch_once``), in a thread for ``party`` alone: one
        that never answers (up to the client's 30 s a request) delays no other partner's
        gossip, nor so the alert of another's fork. A partner is never unpinned: its watch
        lasts as long as the courier, as its delivery lane does. A failure is logged and
        tried again the next round; the same audit failure round after round (a partner
        whose answers carry no signed count: an older version) is logged as an error
        once, then at debug, until a round succeeds (`peer list` shows the last round
        that reached each partner)."""
        said: str | None = None  # the audit failure logged as an error
        while not self._stop.is_set():
            try:
                self.watch_once(party)
                said = None
            except AuditError as exc:  # alerted and audited already, or to ask again
                (log.debug if said == exc.message else log.error)(
                    "audit gossip with %s: %s", party, exc.message)
                said = exc.message
            except Unreachable as exc:  # the courier's loop logs it, with its retries
                log.debug("audit gossip with %s: %s", party, exc)
            except Exception as exc:  # noqa: BLE001 - the watch outlives any one failure
                if self._stop.is_set():
                    return
                (log.warning if isinstance(exc, _RETRIED) else log.exception)(
                    "audit gossip with %s: %s (retry in %.1fs)", party, exc,
                    self.gossip_interval)
            self._stop.wait(self.gossip_interval)

    def check_reports(self) -> int:
        """Check the access history of each compromise report received and not checked
        yet against its reporter's partner audit (CompromiseReports.check: an event left
        out is alerted). A partner out of reach is tried again the next round; a history
        that cannot be checked is recorded so, with the reason. Returns how many were
        checked."""
        checked = 0
        try:
            records = [r for r in self.node.store.compromise_reports()
                       if r.direction == "incoming" and r.history_checked is None]
        except (StoreFull, StoreUnavailable) as exc:
            log.warning("compromise history check: %s (retry in %.1fs)", exc,
                        self.gossip_interval)
            return 0
        for record in records:
            if self._stop.is_set():
                break
            try:
                self.node.compromise.check(record, self.events_before, actor=operator())
                checked += 1
            except Unreachable as exc:
                log.debug("compromise history check of %s: %s", record.report_id, exc)
            except (AuditError, CompromiseError) as exc:  # recorded and alerted as it needs
                log.error("compromise history check of report %s from %s: %s",
                          record.report_id, record.reporter, exc.message)
            except Exception as exc:  # noqa: BLE001 - the watch outlives any one failure
                (log.warning if isinstance(exc, _RETRIED) else log.exception)(
                    "compromise history check of %s: %s (retry in %.1fs)",
                    record.report_id, exc, self.gossip_interval)
        return checked



class _Round:
    """What one round with a partner met so far (Courier.deliver_round), to decide
    whether a message or notice that failed (not a refusal: a 5xx, a receipt that does
    not verify) stops it. It does not, once: the rest goes on, so one item a partner
    fails on for ever (a bug of its own on that one) holds back only what depends on it.
    A second failure in a row stops the round, so a partner failing on every request
    (503 while its store is away, a clock apart) is asked twice a round, not once for
    each item queued; it need not when the item had failed before and the partner
    answered another request of this round well (items that failed before are tried after
    the push, so two stuck ones in a row hold back no other; with nothing else to send,
    each round starts its retries at the next one, so each is tried in turn).
    Unreachable or 429 stops the round at once (the callers raise those). A
    refusal is an answer: the partner is working, and decided."""

    def __init__(self) -> None:
        self.well = False  # whether the partner answered a request of this round well
        self.failing = False  # whether the last item tried failed
        self.failure: FederationError | None = None  # the first failure, raised at the end
        self.refused: Refused | None = None  # the first refusal, raised at the end
        self.behind: set[tuple[str, str]] = set()  # reports, objects: a later one waits
        self.tried: set[tuple[str, str]] = set()  # messages and notices tried this round

    def answered_well(self) -> None:
        self.well, self.failing = True, False

    def failed(self, error: FederationError, *, before: bool) -> None:
        """An item failed with ``error`` (``before``: it had failed at its last try
        too); raised if the round stops here."""
        if isinstance(error, Refused):
            self.refused = self.refused or error
            self.failing = False
            return
        if self.failing and not (before and self.well):
            raise error
        self.failing = True
        self.failure = self.failure or error

    def end(self) -> None:
        """Raise the first failure, else the first refusal: the caller backs off."""
        if self.failure is not None or self.refused is not None:
            raise self.failure or self.refused  # type: ignore[misc]


def _chosen(items: Sequence[_Item], key: Callable[[_Item], str], again: bool | None,
            turn: int = 0) -> list[_Item]:
    """Of ``items`` (oldest first): with ``again``, those that failed at their last try
    (their ``error``) and each later one of the same ``key`` (a report's messages, an
    object's notices: kept in order), starting at the ``turn``-th key (modulo how many)
    and round again; without, the others; None: all, the others first."""
    first: list[_Item] = []
    later: dict[str, list[_Item]] = {}
    for item in items:
        if item.error is not None or key(item) in later:
            later.setdefault(key(item), []).append(item)
        else:
            first.append(item)
    keys = list(later)
    if keys:
        keys = keys[turn % len(keys):] + keys[:turn % len(keys)]
    again_ = [item for k in keys for item in later[k]]
    return again_ if again else first if again is not None else first + again_


class _Failures:
    """Each partner's run of failed rounds, for the courier's log. The first failure of
    a run, and one of another kind than the last warned of, is a warning; the same
    failure again is debug, but for a reminder every REMIND_EVERY seconds that says how
    long it has lasted; the first round to reach the partner after a run (one that it
    answered, Courier.deliver_round) says it is over."""

    def __init__(self) -> None:
        # party -> (since, tries, the kind of failure warned of last, when warned)
        self._runs: dict[str, tuple[str, int, type[BaseException], float]] = {}

    def failed(self, party: str, exc: BaseException, now: float) -> tuple[int, str]:
        """The level to log this failure at, and what to say before it."""
        run = self._runs.get(party)
        if run is None:
            self._runs[party] = (timestamp(utc_now())[:19] + "Z", 1, type(exc), now)
            return logging.WARNING, ""
        since, tries, kind, warned = run
        tries += 1
        if type(exc) is kind and not _due(now, warned, REMIND_EVERY):
            self._runs[party] = (since, tries, kind, warned)
            return logging.DEBUG, ""
        self._runs[party] = (since, tries, type(exc), now)
        return logging.WARNING, f"still failing ({tries} tries since {since}): "

    def recovered(self, party: str) -> str | None:
        """What to say of a round that succeeded: None unless it ends a run of failures."""
        run = self._runs.pop(party, None)
        if run is None:
            return None
        return f"reached again after {run[1]} failed tries since {run[0]}"


def _due(now: float, last: float, interval: float) -> bool:
    """Whether ``interval`` seconds have passed since ``last``; also when the clock reads
    earlier than ``last``, as a faked monotonic clock was seen to (libfaketime, an hour
    back): a clock that goes back must not postpone a retry, a pull or a gossip by the
    size of the jump."""
    return not 0 <= now - last < interval


def _outbox_cursor(party: str, value: Any) -> int:
    """The cursor of ``party``'s outbox page (its ``next``): a whole number this node's
    store can keep, or FederationError (a partner's answer is checked before it is used)."""
    text = str(value)
    if not text.isascii() or not text.isdigit() or len(text) > 19 or int(text) > MAX_INTEGER:
        raise FederationError(f"{party}'s outbox page has a 'next' that is not a cursor: "
                              f"{text[:40]!r}; the pull stops here")
    return int(text)


def _read(party: str, response: httpx.Response, what: str, *, whole: bool = False) -> Any:
    """``party``'s answer to ``what``, read as a request's body is (and with ``whole``, a
    JSON object), or BadAnswer with the reason: the one reading of every answer the
    courier acts on."""
    # response.json() let NaN and Infinity through (an audit "index" of Infinity
    # overflowed int()), a list where an object was meant raised AttributeError, and an
    # answer nested 100,000 deep raised RecursionError: a traceback from a command, and
    # log.exception every round from serve, for whatever a partner answers.
    try:
        answer = parse_json(response.content)
    except JsonError as exc:
        raise _bad_answer(party, what, exc.message) from None
    return _whole(party, what, answer) if whole else answer


def _whole(party: str, what: str, answer: Any) -> dict[str, Any]:
    """``party``'s ``answer`` to ``what``, a JSON object as every answer the courier
    reads fields of must be; else BadAnswer (a list has no fields to read)."""
    if not isinstance(answer, dict):
        raise _bad_answer(party, what, "it is not a JSON object")
    return answer


def _bad_answer(party: str, what: str, reason: str) -> BadAnswer:
    """``party``'s answer to ``what`` refused for ``reason``: one line, as every answer
    the courier cannot take is."""
    return BadAnswer(f"{party}'s answer to {what} is refused: {reason}",
                     hint=f"{party}'s node answered what intelpact never sends: ask its "
                     "operator")


def _held_size(party: str, answer: dict[str, Any]) -> int:
    """How many events of our log the checkpoint ``party`` holds has (its answer to the
    held query), checked before a report's proof is made from it."""
    held = answer.get("held")
    if isinstance(held, bool) or not isinstance(held, int) or held < 0:
        raise _bad_answer(party, HELD, f"its 'held' is not a number of events: "
                                    f"{str(held)[:40]!r}")
    return held


def _unreachable(peer: PeerRecord, exc: httpx.HTTPError) -> Unreachable:
    """``peer`` could not be reached (no connection, no answer in time, TLS refused):
    what happened, and where to look."""
    return Unreachable(f"{peer.party} unreachable: {exc}",
                           hint=f"is {peer.party}'s node serving (intelpact serve)? this node "
                           f"reaches it at {peer.url}, the address on its card")


# What the courier expects to meet and retries quietly: the partner unreachable, failing
# or refusing a request, and this node's own store full or away (it comes back).
_RETRIED = (FederationError, httpx.HTTPError, ValueError, KeyError, StoreFull,
            StoreUnavailable)


class AgreementChanged(FederationError):
    """Another agreement text was pinned since this node was opened (Node.pinned_changed):
    nothing is sent under the old one."""


class Unreachable(FederationError):
    """A partner could not be reached. The courier's loop says so, with its retries; the
    audit watch, which meets the same, does not say it again (at start, partners that
    start beside this node are not listening yet)."""


class AnswerTooLarge(FederationError):
    """A partner's answer is larger than this node takes (``max_content_length``)."""


class EnvelopeTooLarge(FederationError):
    """A partner answered 413 to a push of several objects: over its max_content_length,
    which is not a refusal of what they are. Sent again, fewer at a time."""


class BadAnswer(FederationError):
    """A partner's answer is not one JSON text this node takes (jsonio.parse_json: not
    JSON, NaN or Infinity, nested too deep, a key given twice, …)."""


class Refused(FederationError):
    """A partner refused a compromise message or a notice (counted: after MAX_ATTEMPTS it
    is given up). The rest of the round goes on (Courier.deliver_round)."""


class HeldBack(FederationError):
    """A round went, but for compromise messages or notices the partner refused or
    failed on (the first one's error): those are tried again after the lane's backoff,
    and what is new goes at once meanwhile (Courier._lane)."""


class RateLimited(FederationError):
    """A partner answered 429: this node sent it more requests than it takes from one
    partner. Not a refusal of what was sent: asked again after ``retry_after`` seconds
    (its ``Retry-After``; 1 when it gave none that is a number of seconds)."""

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


def _failed(response: httpx.Response, message: str, *, counted: bool = False
            ) -> FederationError:
    """The error for a partner's answer other than 200: RateLimited for a 429, Refused
    for a refusal ``counted`` towards giving a message up."""
    if counted:
        return Refused(message)
    if response.status_code != 429:
        return FederationError(message)
    after = response.headers.get("retry-after", "")
    return RateLimited(message, float(after) if after.isascii() and after.isdigit() else 1.0)


def _refusal(response: httpx.Response) -> bool:
    """Whether an error answer refuses what was sent (counted: after MAX_ATTEMPTS it is
    given up), rather than a state that passes: the partner failing (5xx, a full disk),
    throttling this node (429), the request not arriving within the partner's time limit
    (408) or the two clocks apart (the request's date refused, not its content)."""
    if response.status_code >= 500 or response.status_code in (408, 429):
        return False
    body = _error_body(response)
    return not (isinstance(body, dict) and body.get("error_code") == ClockSkew.CODE)


def _held(response: httpx.Response) -> int | None:
    """The size of the checkpoint of our log a partner holds, when it answered a key
    rotation announcement asking for a consistency proof from it (ProofNeeded)."""
    if response.status_code != 409:
        return None
    body = _error_body(response)
    if not isinstance(body, dict) or body.get("error_code") != ProofNeeded.CODE:
        return None
    held = body.get("x_intelpact_held")
    return held if isinstance(held, int) and not isinstance(held, bool) else None


def _description(response: httpx.Response) -> str:
    """The reason in a partner's error body (TAXII shape), else the start of the body."""
    body = _error_body(response)
    if isinstance(body, dict) and (body.get("description") or body.get("title")):
        return str(body.get("description") or body.get("title"))[:300]
    return response.text[:300]


def _error_body(response: httpx.Response) -> Any:
    """A partner's error answer, read strictly as every answer is (jsonio.parse_json), or
    None when it is not one JSON text: only its reason or code is looked for, and a body
    nested 100,000 deep raised RecursionError from response.json(), not ValueError."""
    try:
        return parse_json(response.content)
    except JsonError:
        return None
