"""The docs are tested: the CLI reference is the real --help, every command and setting is
documented, and the docs name no command that does not exist."""

from __future__ import annotations

import dataclasses
import importlib.util
import re
from pathlib import Path
from types import ModuleType

import click
import pytest
from cryptography import x509

from intelpact.config import _NODE_KEYS, _SERVER_KEYS, NodeConfig, create_node_dir, load_config
from intelpact.interfaces.cli import main

from helpers import AGREEMENTS, ROOT

DOCS = ROOT / "docs"
CLI_MD = DOCS / "cli.md"
CONFIG_MD = DOCS / "configuration.md"
README = ROOT / "README.md"


def load_generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen_cli_docs",
                                                  ROOT / "scripts" / "gen_cli_docs.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def command_paths(group: click.Group = main, path: tuple[str, ...] = ()) -> set[str]:
    found = {" ".join(path)}
    for name, cmd in group.commands.items():
        if isinstance(cmd, click.Group):
            found |= command_paths(cmd, (*path, name))
        else:
            found.add(" ".join((*path, name)))
    return found


COMMANDS = command_paths()


# -- docs/cli.md -----------------------------------------------------------------------------

def test_cli_md_is_current() -> None:
    expected = load_generator().render()
    assert CLI_MD.read_text(encoding="utf-8") == expected, (
        "docs/cli.md is out of date: run .venv/bin/python scripts/gen_cli_docs.py")


def test_cli_md_covers_every_command() -> None:
    text = CLI_MD.read_text(encoding="utf-8")
    headings = set(re.findall(r"(?m)^## (intelpact.*)$", text))
    assert headings == {f"intelpact {c}".strip() for c in COMMANDS}


def test_cli_md_shows_every_option() -> None:
    text = CLI_MD.read_text(encoding="utf-8")
    sections = dict(re.findall(r"(?ms)^## (intelpact[^\n]*)\n\n```text\n(.*?)```", text))

    def walk(cmd: click.Command, name: str) -> None:
        body = sections[name]
        for param in cmd.params:
            if isinstance(param, click.Option):
                assert param.opts[-1] in body, (name, param.opts)
        if isinstance(cmd, click.Group):
            for sub, subcmd in cmd.commands.items():
                walk(subcmd, f"{name} {sub}")

    walk(main, "intelpact")


# -- commands named in README.md and the docs ----------------------------------------------

SHELL_BLOCKS = ("", "sh", "shell", "bash", "console", "text")


def code_spans(text: str) -> list[str]:
    """Shell-like fenced code blocks and inline code: where commands are written to be
    typed (a ```toml or ```python block is not)."""
    fenced = [body for lang, body in re.findall(r"(?ms)^```([^\n]*)\n(.*?)^```", text)
              if lang.strip() in SHELL_BLOCKS]
    rest = re.sub(r"(?ms)^```[^\n]*\n.*?^```", "", text)
    return fenced + re.findall(r"`([^`\n]+)`", rest)


def mentioned_commands(text: str) -> set[str]:
    """'intelpact user add ...' -> 'user add'; stops at the first word that is an argument."""
    found = set()
    for span in code_spans(text):
        for m in re.finditer(r"(?<![\w/.-])intelpact((?: +[a-z][a-z-]*)+)", span):
            words = m.group(1).split()
            cmd: click.Command = main
            path: list[str] = []
            for word in words:
                if not isinstance(cmd, click.Group):
                    break
                path.append(word)
                sub = cmd.commands.get(word)
                if sub is None:
                    break
                cmd = sub
            found.add(" ".join(path))
    return found


@pytest.mark.parametrize("doc", [README, *sorted(DOCS.glob("*.md"))],
                         ids=lambda p: p.name)
def test_docs_name_only_real_commands(doc: Path) -> None:
    unknown = mentioned_commands(doc.read_text(encoding="utf-8")) - COMMANDS
    assert not unknown, f"{doc.name} mentions commands that do not exist: {sorted(unknown)}"


def test_the_readme_tour_uses_the_main_commands() -> None:
    used = mentioned_commands(README.read_text(encoding="utf-8"))
    assert used >= {"init", "user add", "token issue", "publish", "search", "get", "export",
                    "serve"}


def test_mentioned_commands_parser() -> None:
    text = "```sh\necho x | intelpact user add d n\nintelpact frobnicate d\n```\n" \
           "`intelpact token issue`, src/intelpact/cli.py, `intelpact user` and `intelpact`"
    assert mentioned_commands(text) == {"user add", "frobnicate", "token issue", "user"}


# -- docs/configuration.md -------------------------------------------------------------------

def config_rows(text: str) -> dict[str, str]:
    """Field -> its default cell, from the [node] and [server] tables."""
    rows = {}
    for section in ("node", "server"):
        table = text.split(f"### `[{section}]`", 1)[1].split("\n### ", 1)[0]
        for field, default in re.findall(r"(?m)^\| `(\w+)` \| (.*?) \|", table):
            rows[f"{section}.{field}"] = default
    return rows


def test_configuration_md_documents_every_node_config_field() -> None:
    text = CONFIG_MD.read_text(encoding="utf-8")
    missing = [f.name for f in dataclasses.fields(NodeConfig) if f"`{f.name}`" not in text]
    assert not missing, f"NodeConfig fields missing from docs/configuration.md: {missing}"


def test_configuration_md_documents_every_setting_exactly() -> None:
    rows = config_rows(CONFIG_MD.read_text(encoding="utf-8"))
    settings = {f"node.{k}" for k in _NODE_KEYS} | {f"server.{k}" for k in _SERVER_KEYS}
    assert set(rows) == settings


def test_configuration_md_defaults_are_the_real_defaults(tmp_path: Path) -> None:
    """Load a node.toml holding only the required fields and compare with the docs."""
    d = tmp_path / "jpn"
    cfg = create_node_dir(d, party="JPN", agreement_file=AGREEMENTS / "jpn-nzl.toml")
    (d / "node.toml").write_text(f'[node]\nparty = "JPN"\nagreement_hash = '
                                 f'"{cfg.agreement_hash}"\n', encoding="utf-8")
    loaded = load_config(d)
    rows = config_rows(CONFIG_MD.read_text(encoding="utf-8"))
    attr = {"agreement": "agreement_path"}
    for key, default in rows.items():
        field = key.split(".")[1]
        if default.startswith("required"):
            assert field in ("party", "agreement_hash"), key
            continue
        value = getattr(loaded, attr.get(field, field))
        if value is None:
            shown = "not set"  # then the code decides (the row says how)
        elif isinstance(value, Path):
            shown = f'`"{value.relative_to(d)}"`'
        elif isinstance(value, bool):
            shown = f"`{str(value).lower()}`"
        elif isinstance(value, int):
            shown = f"`{value}`"
        elif isinstance(value, float):
            shown = f"`{value:g}`"
        elif isinstance(value, tuple):  # a TOML array of strings
            shown = "`[" + ", ".join(f'"{v}"' for v in value) + "]`"
        else:
            shown = f'`"{value}"`'
        assert shown in default, (key, shown, default)


def test_configuration_md_example_is_what_init_writes(tmp_path: Path) -> None:
    d = tmp_path / "jpn"
    create_node_dir(d, party="JPN", agreement_file=AGREEMENTS / "jpn-nzl.toml")
    text = CONFIG_MD.read_text(encoding="utf-8")
    example = text.split("```toml\n", 1)[1].split("```", 1)[0]
    assert example == (d / "node.toml").read_text(encoding="utf-8")


def test_configuration_md_layout_lists_what_init_makes(tmp_path: Path) -> None:
    d = tmp_path / "jpn"
    create_node_dir(d, party="JPN", agreement_file=AGREEMENTS / "jpn-nzl.toml")
    text = CONFIG_MD.read_text(encoding="utf-8")
    layout = text.split("## The node directory", 1)[1].split("\n## ", 1)[0]
    for p in d.rglob("*"):
        rel = str(p.relative_to(d)) + ("/" if p.is_dir() else "")
        assert f"| `{rel}` |" in layout, rel
        if p.name.endswith(".pem") or p.is_dir():
            assert f"| `{rel}` | `{p.stat().st_mode & 0o777:04o}` |" in layout, rel
    assert f"| `DIR/` | `{d.stat().st_mode & 0o777:04o}` |" in layout


def test_configuration_md_modes_are_the_real_modes(tmp_path: Path) -> None:
    """Each file's mode in the layout, once the node was first opened: one said to be
    made with the umask is, and one given a mode has it. node.toml and
    keys/audit-head.json were said to be made with the umask, and are 0600."""
    import os

    from intelpact.services.node import Node

    old = os.umask(0o022)
    try:
        Node.create(tmp_path / "jpn", party="JPN",
                    agreement_file=AGREEMENTS / "jpn-nzl.toml").close()
    finally:
        os.umask(old)
    d = tmp_path / "jpn"
    layout = CONFIG_MD.read_text(encoding="utf-8").split("## The node directory", 1)[1]
    rows = dict(re.findall(r"(?m)^\| `([^`]+)` \| `?([0-7]{4}|umask)`? \|", layout))
    checked = 0
    for p in d.rglob("*"):
        rel = str(p.relative_to(d)) + ("/" if p.is_dir() else "")
        if rel in rows:
            mode = f"{p.stat().st_mode & 0o777:04o}"
            assert mode == (("0755" if p.is_dir() else "0644") if rows[rel] == "umask"
                            else rows[rel]), (rel, mode, rows[rel])
            checked += 1
    assert checked >= 12, rows


def test_configuration_md_tls_profile_is_the_real_certificate(tmp_path: Path) -> None:
    """The docs say CA:FALSE (pinned directly, never a CA): check the cert."""
    text = CONFIG_MD.read_text(encoding="utf-8")
    assert "`CA:FALSE`" in text
    assert "psf/requests#3829" in text and "REQUESTS_CA_BUNDLE" in text
    cfg = create_node_dir(tmp_path / "jpn", party="JPN",
                          agreement_file=AGREEMENTS / "jpn-nzl.toml", host="node.example.org")
    assert cfg.tls_cert is not None
    cert = x509.load_pem_x509_certificate(cfg.tls_cert.read_bytes())
    bc = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert bc.critical and bc.value.ca is False
    ku = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert ku.digital_signature and not ku.key_cert_sign
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    assert san.get_values_for_type(x509.DNSName) == ["localhost", "node.example.org"]
    assert cert.subject.rfc4514_string() == "CN=intelpact JPN node"
    days = (cert.not_valid_after_utc - cert.not_valid_before_utc).days
    assert "825 days" in text and days == 825


def test_readme_links_the_reference_docs() -> None:
    readme = README.read_text(encoding="utf-8")
    assert "docs/cli.md" in readme and "docs/configuration.md" in readme
