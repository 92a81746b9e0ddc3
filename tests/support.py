"""Helpers shared by unit and integration tests (fixtures that need no running service)."""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator
from pathlib import Path

from cases.episode_store import EpisodeStore
from cases.records import Case
from cases.store import CaseStore
from fraudscore.model import ModelCard


def copy_version(base: Path, source: int, target: int, **card_changes: object) -> Path:
    """Publishes a copy of version ``source`` as ``target`` the way the trainer does: temp dir, then rename.

    The card's version is rewritten (plus ``card_changes``): a hot-reload candidate.
    """
    tmp = base / f".tmp-{target}"
    shutil.copytree(base / str(source), tmp)
    ModelCard.from_dict({**ModelCard.read(tmp).to_dict(), "version": target, **card_changes}).write(tmp)
    tmp.rename(base / str(target))
    return base / str(target)


@contextlib.contextmanager
def phase(name: str) -> Iterator[None]:
    """Names the phase of a multi-phase test in the failure of any assertion inside it."""
    try:
        yield
    except AssertionError as exc:
        raise AssertionError(f"phase {name!r} failed: {exc}") from exc


def process_alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, exited but not yet reaped, does not), from /proc."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"


def open_cases(store: CaseStore, flagged: list[Case]) -> dict[str, Case]:
    """What the stream's case sink does with flagged transactions (without Beam): members of card cases."""
    episodes = EpisodeStore(store)
    members, touched, _ = episodes.assign(flagged)
    episodes.write_members(members, touched)
    episodes.mark_done(members, touched)
    return {m.transaction_id: m for m in members}
