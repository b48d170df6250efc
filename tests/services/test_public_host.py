"""A node listening on every interface (``server.host = "0.0.0.0"``) and the address its
card gives partners (``server.public_host``): real nodes, real mutual TLS on 127.0.0.x."""

from __future__ import annotations

import dataclasses
import json
import socket
import ssl
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner
from cryptography import x509
from test_federation import people, publish, push, visible_ids

from intelpact.config import write_config
from intelpact.crypto.tls import load_certificate
from intelpact.interfaces.cli import main
from intelpact.services.federation import FederationError, make_card, sign_payload
from intelpact.services.node import Node

from helpers import AGREEMENTS, make_node, node_ports, serving_federation
from helpers import test_database as database_under_test
from served import Pair, bulk, keys, wait_for

WILDCARDS = ("0.0.0.0", "::")  # noqa: S104 - what an operator writes to listen everywhere


def _listening_everywhere(node: Node, host: str) -> Node:
    """``node`` reopened after its operator set ``server.host = host`` in node.toml (a node
    made before ``public_host`` existed, or edited since)."""
    cfg = node.config
    node.close()
    write_config(dataclasses.replace(cfg, host=host))
    return Node.open(cfg.dir)


def _cli(*args: object) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


@pytest.mark.parametrize("host", WILDCARDS)
def test_a_card_never_gives_partners_a_wildcard_address(tmp_path: Path, host: str) -> None:
    """A node listening on every interface gave partners a card whose URL was
    ``https://0.0.0.0:8402`` (or ``https://[::]:8402``): an address that names no host,
    which no partner reaches (on the partner's own machine, Linux even takes it for
    itself). The card is now refused, saying what to set, by ``make_card`` and by
    ``intelpact card``."""
    jpn = _listening_everywhere(make_node(tmp_path / "jpn", "JPN"), host)
    try:
        with pytest.raises(FederationError, match=r"server\.public_host") as info:
            make_card(jpn.identity)
        assert "every interface" in info.value.message and "public_host" in (
            info.value.hint or "")
    finally:
        jpn.close()
    code, out, err = _cli("card", tmp_path / "jpn")
    assert code == 2 and not out, out
    assert "every interface" in err and "server.public_host" in err, err


def test_a_partner_s_card_with_a_wildcard_address_is_not_pinned(tmp_path: Path) -> None:
    """A card an older intelpact made for a node listening on every interface, signed by
    that node: pinned, the partner's courier sent its objects to 0.0.0.0, its own
    machine. It is refused, saying the partner must set its public host."""
    jpn, nzl = make_node(tmp_path / "jpn", "JPN"), make_node(tmp_path / "nzl", "NZL")
    try:
        for url in ("https://0.0.0.0:8402", "https://[::]:8402", "https://[0:0::0]:8402"):
            body = {k: v for k, v in make_card(nzl.identity).items() if k != "signature"}
            body["url"] = url
            card = {**body, "signature": sign_payload(nzl.identity.key, body)}
            with pytest.raises(FederationError, match="every interface") as info:
                jpn.federation.add_peer(card)
            assert "public_host" in (info.value.hint or "")
        assert jpn.federation.peers() == {}
    finally:
        jpn.close()
        nzl.close()


def test_a_node_listening_everywhere_is_reached_at_its_public_host(tmp_path: Path) -> None:
    """End to end: JPN listens on 0.0.0.0 and gives partners 127.0.0.2, its public host,
    which its certificate names; NZL pins the card `intelpact card` printed, and each
    delivers to the other over mutual TLS. The listener is on every interface (reached
    at 127.0.0.1 as well), the card names only the public host."""
    jpn = Node.create(tmp_path / "jpn", party="JPN", agreement_file=AGREEMENTS / "jpn-nzl.toml",
                      tls=False, host="0.0.0.0", public_host="127.0.0.2",  # noqa: S104
                      database=database_under_test(), **node_ports())
    jpn_dir = jpn.config.dir
    assert (jpn.config.host, jpn.config.public_host) == ("0.0.0.0", "127.0.0.2")  # noqa: S104
    fed = jpn.config.federation_port
    cert = load_certificate(jpn.config.tls_cert)
    ips = [str(ip) for ip in cert.extensions.get_extension_for_class(
        x509.SubjectAlternativeName).value.get_values_for_type(x509.IPAddress)]
    assert "127.0.0.2" in ips and "0.0.0.0" not in ips, ips  # noqa: S104
    nzl = make_node(tmp_path / "nzl", "NZL")
    try:
        for node in (jpn, nzl):
            people(node)
        code, out, err = _cli("card", jpn_dir)
        assert code == 0, err
        card = json.loads(out)
        assert card["url"] == f"https://127.0.0.2:{fed}"
        nzl.federation.add_peer(card)
        jpn.federation.add_peer(make_card(nzl.identity))
        to_jpn = publish(nzl, "for japan", "RESTRICTED", ("JPN",))
        to_nzl = publish(jpn, "for new zealand", "極秘", ("NZL",))
        with serving_federation(jpn), serving_federation(nzl):
            # bound to every interface: 127.0.0.1 takes the handshake as well
            ctx = ssl.create_default_context(cadata=jpn.identity.tls_cert_pem)
            ctx.load_cert_chain(str(nzl.config.tls_cert), str(nzl.config.tls_key))
            for address in ("127.0.0.1", "127.0.0.2"):
                with socket.create_connection((address, fed), timeout=10) as raw, \
                        ctx.wrap_socket(raw, server_hostname=address) as conn:
                    assert conn.version()
            assert push(nzl, "JPN") >= 1  # to the card's address, 127.0.0.2
            assert push(jpn, "NZL") >= 1
        assert to_jpn["id"] in visible_ids(jpn)
        assert to_nzl["id"] in visible_ids(nzl)
        assert nzl.federation.peers()["JPN"].url == f"https://127.0.0.2:{fed}"
        assert any(d.party == "JPN" and d.object_id == to_jpn["id"] and d.receipt_id
                   for d in nzl.store.disseminations())
    finally:
        jpn.close()
        nzl.close()


def test_served_nodes_deliver_to_the_one_listening_everywhere(tmp_path: Path) -> None:
    """The same with `intelpact serve` processes: JPN, made with `init --host 0.0.0.0
    --public-host 127.0.0.2`, serves without the warning of no public host, gives its
    people and partners the public host and says where it listens, and NZL,
    having pinned the card `intelpact card` printed, delivers to it at 127.0.0.2 (its
    courier, over mutual TLS), as JPN delivers to NZL."""
    database = database_under_test()
    with Pair(tmp_path, pool=False, public_hosts={"JPN": "127.0.0.2"},
              databases={"JPN": database} if database else None) as pair:
        card = tmp_path / "jpn-card.json"
        card.write_text(pair.cli("JPN", "card", str(pair.dirs["JPN"])).stdout)
        url = json.loads(card.read_text())["url"]
        assert url == f"https://127.0.0.2:{pair.fed_port['JPN']}"
        pair.cli("NZL", "peer", "add", str(pair.dirs["NZL"]), str(card))
        for party in ("JPN", "NZL"):
            pair.start(party)
        log = pair.log_text("JPN")
        port = pair.taxii["JPN"].split(":")[2].split("/")[0]
        # people, as partners, are told the address they reach it by
        assert f"JPN node: http://127.0.0.2:{port}/taxii2/ (listening on 0.0.0.0)" in log, log
        assert f"partners: {url} (mutual TLS, listening on 0.0.0.0)" in log, log
        assert "every interface" not in log, log  # the warning of no public host
        to_jpn, to_nzl = bulk(3, "to japan", "NZL"), bulk(3, "to new zealand", "JPN")
        pair.publish("NZL", to_jpn)
        pair.publish("JPN", to_nzl)

        def arrived(receiver: str, sent: list[dict]) -> bool:
            got = {(oid, version) for oid, version, *_ in pair.query(
                receiver, "SELECT object_id, version FROM objects")}
            return keys(sent) <= got

        wait_for(lambda: arrived("JPN", to_jpn), 60, "NZL's objects at JPN", pair)
        wait_for(lambda: arrived("NZL", to_nzl), 60, "JPN's objects at NZL", pair)
        wait_for(lambda: pair.undelivered("NZL", "JPN") == 0, 30, "NZL's outbox drained",
                 pair)


def test_a_partner_asking_for_the_card_of_a_node_listening_everywhere_is_told_why(
        tmp_path: Path) -> None:
    """A node whose host was edited to 0.0.0.0 after its partners pinned it serves on,
    and a partner asking for its card (GET /federation/card) gets 500 with the reason,
    not a card with an address that reaches no one (nor a traceback)."""
    jpn, nzl = make_node(tmp_path / "jpn", "JPN"), make_node(tmp_path / "nzl", "NZL")
    jpn.federation.add_peer(make_card(nzl.identity))
    nzl.federation.add_peer(make_card(jpn.identity))
    jpn = _listening_everywhere(jpn, "0.0.0.0")  # noqa: S104
    try:
        ctx = ssl.create_default_context(cadata=jpn.identity.tls_cert_pem)
        ctx.load_cert_chain(str(nzl.config.tls_cert), str(nzl.config.tls_key))
        with serving_federation(jpn), httpx.Client(verify=ctx) as client:
            r = client.get(f"https://127.0.0.1:{jpn.config.federation_port}/federation/card")
        assert r.status_code == 500, r.text
        assert "every interface" in r.json()["description"], r.text
        assert "server.public_host" in r.json()["description"], r.text
    finally:
        jpn.close()
        nzl.close()
