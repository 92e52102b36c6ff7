"""UAPI text protocol: encoding set requests, parsing get replies, garbage refused cleanly."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.wg.strategies import KEYS, PRIVATE
from tva.errors import DecodeError, TooLarge
from wg.plan.desired import DesiredPeer
from wg.plan.diff import AddAddress, AddPeer, LinkUp, RemovePeer, SetDevice, UpdatePeer
from wg.plan.keys import b64_to_hex
from wg.uapi import LINE_CHARS_MAX, PEERS_MAX, encode_set, parse_errno, parse_get

H0, H1 = b64_to_hex(KEYS[0]), b64_to_hex(KEYS[1])

REPLY = (
    f"private_key={b64_to_hex(PRIVATE[0])}\nlisten_port=51820\n"
    f"public_key={H0}\npreshared_key={'0' * 64}\nprotocol_version=1\nendpoint=198.51.100.2:51820\n"
    "last_handshake_time_sec=1700000000\nlast_handshake_time_nsec=5\ntx_bytes=100\nrx_bytes=200\n"
    "persistent_keepalive_interval=25\nallowed_ip=fd00:77::2/128\nallowed_ip=10.77.3.2/32\n"
    f"public_key={H1}\nprotocol_version=1\nlast_handshake_time_sec=0\nlast_handshake_time_nsec=0\n"
    "tx_bytes=0\nrx_bytes=0\npersistent_keepalive_interval=0\nendpoint=[2001:db8::1]:9\n"
    "errno=0\n\n"
).encode()


def test_parse_a_wireguard_go_reply():
    dev = parse_get(REPLY)
    assert dev.private_key == PRIVATE[0] and dev.listen_port == 51820
    a, b = dev.peers
    assert a.public_key == KEYS[0] and a.endpoint == "198.51.100.2:51820"
    assert a.allowed_ips == ("10.77.3.2/32", "fd00:77::2/128")
    assert (a.keepalive_s, a.last_handshake_unix_s, a.rx_bytes, a.tx_bytes) == (25, 1700000000, 200, 100)
    assert b.public_key == KEYS[1] and b.keepalive_s is None and b.last_handshake_unix_s is None
    assert b.endpoint == "[2001:db8::1]:9" and b.allowed_ips == ()


def test_empty_device():
    dev = parse_get(b"listen_port=4000\nerrno=0\n\n")
    assert dev.private_key is None and dev.peers == () and dev.listen_port == 4000


def test_encode_set_puts_public_key_first_and_skips_netlink_ops():
    peer = DesiredPeer(KEYS[0], "198.51.100.2:51820", ("10.77.3.2/32", "fd00:77::2/128"), 25)
    req = encode_set([SetDevice(PRIVATE[0], 51820), AddAddress("10.77.3.1/24"), RemovePeer(KEYS[1]),
                      AddPeer(peer), UpdatePeer(peer, set_endpoint=False), LinkUp()])
    assert req is not None
    text = req.decode()
    assert text.startswith("set=1\n") and text.endswith("\n\n") and text.count("\n\n") == 1
    lines = text.split("\n")[1:-2]
    assert lines[:2] == [f"private_key={b64_to_hex(PRIVATE[0])}", "listen_port=51820"]
    assert lines[2:4] == [f"public_key={H1}", "remove=true"]
    blocks = [i for i, line in enumerate(lines) if line.startswith("public_key=")]
    add = lines[blocks[1]:blocks[2]]
    assert add == [f"public_key={H0}", "endpoint=198.51.100.2:51820", "persistent_keepalive_interval=25",
                   "replace_allowed_ips=true", "allowed_ip=10.77.3.2/32", "allowed_ip=fd00:77::2/128"]
    assert not any(line.startswith("endpoint=") for line in lines[blocks[2]:])  # update kept endpoint
    assert "10.77.3.1/24" not in text
    assert encode_set([AddAddress("10.77.3.1/24"), LinkUp()]) is None


@pytest.mark.parametrize("reply,code", [(b"errno=0\n\n", 0), (b"errno=-22\n\n", -22), (b"errno=1\n\n", 1)])
def test_errno(reply, code):
    assert parse_errno(reply) == code


def test_get_with_error_is_decode_error():
    with pytest.raises(DecodeError):
        parse_get(b"errno=-5\n\n")


@pytest.mark.parametrize("bad", [
    b"", b"errno=0\n", b"errno=x\n\n", b"listen_port=1\n\n", b"noequals\nerrno=0\n\n",
    b"=1\nerrno=0\n\n", b"endpoint=1.2.3.4:5\nerrno=0\n\n",  # peer key before any peer
    f"public_key={H0}\nlisten_port=1\nerrno=0\n\n".encode(),  # device key inside a peer
    f"public_key={H0}\npublic_key={H0}\nerrno=0\n\n".encode(),  # same peer twice
    f"public_key={H0}\nallowed_ip=10.0.0.1/8\nerrno=0\n\n".encode(),  # host bits set
    f"public_key={H0}\ntx_bytes=-1\nerrno=0\n\n".encode(),
    f"public_key={H0[:-1]}\nerrno=0\n\n".encode(),
    b"listen_port=70000\nerrno=0\n\n", b"\xff\nerrno=0\n\n",
    f"public_key={H0}\nendpoint=\x01\nerrno=0\n\n".encode(),
])
def test_malformed_replies_are_decode_errors(bad):
    with pytest.raises(DecodeError):
        parse_get(bad)


def test_limits():
    with pytest.raises(TooLarge):
        parse_get(b"x=" + b"1" * LINE_CHARS_MAX + b"\nerrno=0\n\n")
    many = "".join(f"public_key={i:064x}\n" for i in range(PEERS_MAX + 1))
    with pytest.raises(TooLarge):
        parse_get((many + "errno=0\n\n").encode())


@given(st.binary(max_size=400))
def test_fuzz_bytes(data):
    try:
        parse_get(data)
    except (DecodeError, TooLarge):
        pass


lines_st = st.lists(
    st.tuples(
        st.sampled_from(["public_key", "private_key", "listen_port", "endpoint", "allowed_ip", "tx_bytes",
                         "rx_bytes", "persistent_keepalive_interval", "last_handshake_time_sec", "fwmark",
                         "protocol_version", "x"]),
        st.one_of(st.sampled_from([H0, H1, "0", "51820", "10.77.3.2/32", "fd00::/128", "[::1]:1",
                                   "198.51.100.1:5", "-1", "99999999999999999999999"]), st.text(max_size=20)),
    ),
    max_size=12,
)


@given(lines_st, st.sampled_from(["errno=0", "errno=-22", "errno=", ""]))
def test_fuzz_structured(lines, end):
    text = "".join(f"{k}={v}\n" for k, v in lines) + end + "\n\n"
    try:
        data = text.encode("ascii")
    except UnicodeEncodeError:
        data = text.encode("utf-8")
    try:
        dev = parse_get(data)
    except (DecodeError, TooLarge):
        return
    # Whatever parsed is well-formed: distinct peers with canonical CIDRs.
    keys = [p.public_key for p in dev.peers]
    assert len(keys) == len(set(keys))
