"""Invites need not sit in `ps` output: `join -` reads the token from standard input and `join FILE`
from a file — through the real CLI against a running founder — and bad sources are refused with a
hint, never joined with."""

from __future__ import annotations

import io
import os
import subprocess

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cli.invite_arg import INVITE_SOURCE_CHARS_MAX, TOKEN_PREFIXES, read_invite
from mesh.invites import TOKEN_PREFIX
from tests.agent.procs import BIN, AgentProc
from tva.errors import InvalidInput


def test_a_token_a_file_and_stdin_all_give_the_token(tmp_path):
    assert TOKEN_PREFIXES == (TOKEN_PREFIX,)  # the CLI's copy of the prefix is the invites' own
    token = TOKEN_PREFIX + "abcDEF_-123"
    assert read_invite(token) == token
    assert read_invite("-", io.StringIO(f"  {token}\n")) == token
    f = tmp_path / "invite.txt"
    f.write_text(token + "\n")
    assert read_invite(str(f)) == token


@pytest.mark.parametrize("text", ["", "   \n", "tva1:a tva1:b", "x" * (INVITE_SOURCE_CHARS_MAX + 1)])
def test_stdin_and_files_that_do_not_hold_one_token_are_refused(tmp_path, text):
    with pytest.raises(InvalidInput) as stdin_err:
        read_invite("-", io.StringIO(text))
    assert stdin_err.value.hint
    f = tmp_path / "invite.txt"
    f.write_text(text)
    with pytest.raises(InvalidInput):
        read_invite(str(f))


def test_an_unreadable_invite_file_is_a_clear_error(tmp_path):
    f = tmp_path / "invite.bin"
    f.write_bytes(b"\xff\xfe\x00tva1:")
    with pytest.raises(InvalidInput, match="cannot read the invite file"):
        read_invite(str(f))


@given(st.text(max_size=300))
def test_garbage_on_stdin_is_refused_or_is_one_stripped_token(text):
    try:
        token = read_invite("-", io.StringIO(text))
    except InvalidInput:
        return
    assert token == text.strip() and token and len(token.split()) == 1


def test_join_from_stdin_and_from_a_file_with_the_real_cli(tmp_path):
    founder = AgentProc(tmp_path, "founder")
    joiners = [AgentProc(tmp_path, name) for name in ("piped", "filed")]
    try:
        founder.start()
        piped, filed = joiners
        token = founder.cli("invite", "--json")["invite"]
        cmd = [BIN, "--state-dir", str(piped.state_dir), "join", "-", "--json",
               "--listen", "/ip4/127.0.0.1/tcp/0"]
        res = subprocess.run(cmd, input=token + "\n", env=piped.env, capture_output=True, text=True, timeout=90)
        assert res.returncode == 0, res.stderr
        assert token not in " ".join(cmd)
        invite_file = tmp_path / "invite.txt"
        invite_file.write_text(founder.cli("invite", "--json")["invite"])
        os.chmod(invite_file, 0o600)
        res = filed.run_cli("join", str(invite_file), "--json", "--listen", "/ip4/127.0.0.1/tcp/0", timeout_s=90)
        assert res.returncode == 0, res.stderr
        for joiner in joiners:
            assert founder.peer_id in joiner.cli("hosts", "--json").__repr__()
        # an empty stdin is refused with its hint, and nothing is joined
        empty = AgentProc(tmp_path, "empty")
        res = subprocess.run([BIN, "--state-dir", str(empty.state_dir), "join", "-"], input="", env=empty.env,
                             capture_output=True, text=True, timeout=60)
        assert res.returncode != 0 and "no invite in standard input" in res.stderr and "hint" in res.stderr
    finally:
        founder.stop()
