"""What the API's handlers may use of the agent (``agent.api``'s ``Ctx``), in a module of its own:
the daemon builds it before FastAPI is imported (that import waits until the host is reachable)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tva.errors import DaemonUnavailable


@dataclass(frozen=True)
class ApiContext:
    """What handlers may use. Offline (no daemon) only ``service`` is there and ``daemon`` is False."""

    service: Any  # agent.service.Service
    daemon: bool = False
    torrents: Any = None  # agent.torrents.TorrentManager (None: offline, or the engine is off)
    fabric: Any = None  # agent.fabric.FabricManager
    jobs: Any = None  # agent.jobs.Jobs
    library: Any = None  # agent.library_service.LibraryService (the daemon's)
    playback: Any = None  # agent.playback.Playback (the daemon's): media URLs and the player
    supervisor: Any = None  # agent.supervisor.Supervisor (components, fault injection)
    friends: Any = None  # agent.friends.FriendsManager (the daemon's)
    faults: bool = False  # serve the fault-injection routes (TVA_FAULT_INJECTION=1)

    def need_daemon(self, what: str) -> None:
        if not self.daemon:
            raise DaemonUnavailable(f"{what} needs the running daemon", hint="start it with: tva-agent run")
