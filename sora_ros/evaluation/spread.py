"""Clips taken in turn from every source, so that a cap on their number (`sora-ros eval --max-clips`)
samples every bag and video rather than the opening of the first one, and says what it left out.

    spread = SpreadClips(sources_of(paths), lambda source: model_clips([source], ...))
    try:
        for clip in islice(spread, max_clips):
            ...
    finally:
        spread.close()  # the sources' readers report what they read (their notes) now
    note = cap_note(spread.coverage(max_clips))  # None: nothing was left out
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from sora_ros.bag.clip_sources import VIDEO_SUFFIXES
from sora_ros.bag.reading import find_bags

# Sources named one by one in a cap note (all of them are in metrics.json); the rest are counted.
NAMED_SOURCES = 8


def sources_of(paths: Iterable[str | Path]) -> list[Path]:
    """The bags (folders expanded, sorted) and then the video files of `paths`: the order in which
    `sora_ros.bag.clip_sources.model_clips` reads them.

    Raises:
        FileNotFoundError: a bag path that does not exist, or a folder without a bag.
    """
    paths = [Path(path) for path in paths]
    bags = [path for path in paths if path.suffix.lower() not in VIDEO_SUFFIXES]
    videos = [path for path in paths if path.suffix.lower() in VIDEO_SUFFIXES]
    return [*(find_bags(bags) if bags else []), *videos]


class SpreadClips:
    """The clips of every source in turn: the first clip of each source, then the second of each, ...;
    a source with no clip left drops out of the turn.

    Args:
        sources: bags and video files, in order.
        clips_of: source -> an iterable of its clips; called when the turn first reaches the source,
            so a source that a cap stops before is never opened.

    Attributes:
        taken: source (as str) -> clips handed out from it, in the order the sources were opened.
        finished: sources read to their end.
    """

    def __init__(self, sources: Iterable[str | Path], clips_of: Callable[[str | Path], Iterable[Any]]) -> None:
        self.sources = list(sources)
        self._clips_of = clips_of
        self._open: dict[str, Iterator[Any]] = {}
        self.taken: dict[str, int] = {}
        self.finished: list[str] = []

    def __iter__(self) -> Iterator[Any]:
        turn = list(self.sources)
        while turn:
            still = []
            for source in turn:
                name = str(source)
                if name not in self.taken:
                    self.taken[name] = 0
                    self._open[name] = iter(self._clips_of(source))
                try:
                    clip = next(self._open[name])
                except StopIteration:
                    del self._open[name]
                    self.finished.append(name)
                    continue
                self.taken[name] += 1
                still.append(source)
                yield clip
            turn = still

    def close(self) -> None:
        """Close the sources still open (a generator then runs its clean-up: its report and notes)."""
        for clips in self._open.values():
            if hasattr(clips, "close"):
                clips.close()
        self._open.clear()

    def coverage(self, max_clips: int | None) -> dict | None:
        """What a cap of `max_clips` left out, for metrics.json and `cap_note`; None when nothing was
        (no cap, or every source read to its end before it).

        Returns:
            {"max_clips": the cap, "clips_per_source": {source: clips taken}, "sources": how many,
             "not_read": sources never opened, "read_in_part": sources opened but not read to their end}
        """
        if max_clips is None or sum(self.taken.values()) < max_clips:
            return None
        names = [str(source) for source in self.sources]
        not_read = [name for name in names if name not in self.taken]
        read_in_part = [name for name in self.taken if name not in self.finished]
        if not not_read and not read_in_part:
            return None
        return {"max_clips": max_clips, "clips_per_source": {n: k for n, k in self.taken.items() if k},
                "sources": len(names), "not_read": not_read, "read_in_part": read_in_part}


def _listing(names: list[str]) -> str:
    shown = ", ".join(names[:NAMED_SOURCES])
    return shown + (f" and {len(names) - NAMED_SOURCES} more" if len(names) > NAMED_SOURCES else "")


def cap_note(coverage: dict | None, what: str = "clips", spacing: str = "one every --stride frames") -> str | None:
    """One line saying that the cap was hit, how many clips came from which source and which sources
    were not read (None when `coverage` is None); `what`: the clips' name (plural), `spacing`: where in
    a source they start. E.g.

        --max-clips 4 reached: 2 clips from a.mcap, 2 from b.mcap (taken in turn from each source, each
        from its start, one every --stride frames); 1 of 3 sources not read: c.mcap. ...
    """
    if coverage is None:
        return None
    counts = list(coverage["clips_per_source"].items())
    parts = [f"{count} {what if count != 1 else what.removesuffix('s')} from {name}" if i == 0
             else f"{count} from {name}" for i, (name, count) in enumerate(counts[:NAMED_SOURCES])]  # fmt: skip
    if len(counts) > NAMED_SOURCES:
        parts.append(f"{sum(count for _, count in counts[NAMED_SOURCES:])} from {len(counts) - NAMED_SOURCES} more")
    text = (f"--max-clips {coverage['max_clips']} reached: {', '.join(parts)} (taken in turn from each source, each "
            f"from its start, {spacing})")
    not_read, in_part = coverage["not_read"], coverage["read_in_part"]
    if not_read:
        text += f"; {len(not_read)} of {coverage['sources']} sources not read: {_listing(not_read)}"
    else:
        text += f"; {len(in_part)} of {coverage['sources']} sources read only in part"
    return text + ". Raise --max-clips, or leave it out, to score more."
