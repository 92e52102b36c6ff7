"""Every error tva-agent raises on purpose, in two families.

* ``LocalError`` — local misuse: a bad command-line argument, a broken config file, nonsense
  passed to a policy function. The caller (usually a person) can fix it; it carries a ``hint``.
* ``RemoteDataError`` — bad data that came from outside this process's control: a peer's frame,
  a forged or stale delta, a tampered invite, a corrupt state file. It is logged and counted,
  never fatal, and never changes state.

Why two families: the daemon must keep running through any amount of the second kind, while the
CLI must turn the first kind into one clear line and a non-zero exit.
"""

from __future__ import annotations


class TvaError(Exception):
    """Base of every deliberate tva-agent error."""

    hint: str = ""

    def __init__(self, message: str, *, hint: str = "") -> None:
        super().__init__(message)
        if hint:
            self.hint = hint

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else ""


# --- local misuse -------------------------------------------------------------------------------


class LocalError(TvaError):
    """The caller asked for something invalid; the hint says how to fix it."""


class InvalidInput(LocalError, ValueError):
    """A value passed in (argument, config entry, policy input) is out of its domain."""


class NotFound(InvalidInput):
    """The named thing (host, holding, pin) does not exist here."""


class Conflict(LocalError):
    """A well-formed request that the fleet's current state does not allow (e.g. more copies than hosts)."""


class ConfigError(LocalError):
    """The configuration file or environment is unreadable or inconsistent."""


class NotInitialised(LocalError):
    """The state directory holds no fleet yet."""


class Forbidden(LocalError):
    """This host lacks the right for a decision (its role in the fleet, or it was revoked); every
    other member would refuse the change the same way."""


class DaemonUnavailable(LocalError):
    """A command needs the running daemon and could not reach it."""


# --- bad remote data ----------------------------------------------------------------------------


class RemoteDataError(TvaError):
    """Data from outside (a peer, a file, an invite) is malformed or untrustworthy."""


class DecodeError(RemoteDataError):
    """Bytes that do not decode into the expected structure."""


class TooLarge(RemoteDataError):
    """A frame, field or message exceeds its size limit."""


class UnsupportedVersion(RemoteDataError):
    """A frame or record carries a format version this build does not speak."""


class SignatureError(RemoteDataError):
    """A signature does not verify, or the signer is not the claimed owner."""


class StaleData(RemoteDataError):
    """Data older than what is already held (a replay); harmless, refused."""


class GapError(RemoteDataError):
    """A delta that starts after what is held: applying it would skip changes."""


class RevokedPeer(RemoteDataError):
    """Data or a connection from a host the fleet has revoked."""


class InviteError(RemoteDataError):
    """An invite that is malformed, tampered, expired, wrongly signed or already redeemed."""


class StateCorrupt(RemoteDataError):
    """A state file on disk is truncated or corrupt; the last good state is kept."""


class PeerUnavailable(RemoteDataError):
    """A peer could not be reached, or did not answer a request in time (mesh transport)."""


class RequestRefused(RemoteDataError):
    """A peer answered a request with an error (its handler failed or refused the query)."""


class ForeignFleet(RemoteDataError):
    """Fleet-document data from another genesis (another fleet, or a document forked elsewhere)."""


# --- appended by the wg fabric (issue 6) ---------------------------------------------------------


class WgBackendError(LocalError):
    """The WireGuard backend (kernel module or wireguard-go) is missing, refused or failed an
    operation on ``tva0``; the hint says what to install or check."""


# --- appended by the daemon work (issues 12 and 13) -----------------------------------------------


class StateDirBusy(LocalError):
    """Another process holds the state dir's writer lock (a daemon, or another command)."""


class StateUnwritable(LocalError):
    """The state dir cannot be written at all (read-only, removed, no permission)."""


class HostRevoked(TvaError):
    """This host was revoked from its fleet: it no longer takes part (its data is kept)."""


# --- appended by the media plane and playback (issue 17) ------------------------------------------


class MediaUnavailable(TvaError):
    """A file cannot be streamed or played as asked (unreadable for HLS, a failed transcode, no
    reachable holder, no libmpv); the message says why."""


class MediaBusy(TvaError):
    """Every transcode slot is taken by streams in use: retry shortly."""
