"""The leaderboard tab: ``chatflow elo``'s own functions applied to the votes file, cached until it changes.

Nothing is computed here that ``chatflow elo`` does not compute: the same reader (malformed lines
skipped), :func:`~chatflow_plugin.evaluation.elo.rate`, the Table-3 and win-rate markdown and the two
figures. The tab prints the equivalent command line, so a number on the page can be reproduced.
"""
from __future__ import annotations

import shlex
import threading
from dataclasses import dataclass
from pathlib import Path

from ...errors import ChatflowError
from .. import elo


@dataclass(frozen=True)
class EloSettings:
    k: float = 4.0
    prior: float = 1.0
    bootstrap: int = 1000
    seed: int = 0

    def command(self, votes: Path) -> str:
        return (f"chatflow elo {shlex.quote(str(votes))} --k {self.k:g} --prior {self.prior:g} "
                f"--bootstrap {self.bootstrap} --seed {self.seed}")


@dataclass
class Board:
    markdown: str                 # header, Table 3, win-rate matrix, the equivalent command
    figure3: object | None        # matplotlib figure: non-tie win rates (Figure 3)
    matrix: object | None         # matplotlib figure: win-rate heat map
    votes: int


class Leaderboard:
    def __init__(self, votes_path: str | Path, settings: EloSettings = EloSettings()):
        self.path, self.settings = Path(votes_path), settings
        self._lock = threading.Lock()
        self._key: tuple | None = None
        self._board: Board | None = None

    def board(self) -> Board:
        """The leaderboard of the votes file as it is now (recomputed only when the file changed)."""
        with self._lock:
            try:
                stat = self.path.stat()
                key = (stat.st_size, stat.st_mtime_ns)
            except FileNotFoundError:
                key = None
            if self._board is None or key != self._key:
                if self._board is not None:   # free the figures of the board being replaced
                    elo.close_figures(self._board.figure3, self._board.matrix)
                self._board, self._key = self._compute(key is not None), key
            return self._board

    def _compute(self, exists: bool) -> Board:
        command = self.settings.command(self.path)
        footer = f"\n\nComputed by the code of `chatflow elo`; the same numbers: `{command}`"
        if not exists or self.path.stat().st_size == 0:
            return Board("No votes yet." + footer, None, None, 0)
        try:
            votes, problems = elo.read_votes(self.path)
            ratings = elo.rate(votes, k=self.settings.k, prior=self.settings.prior,
                               bootstrap=self.settings.bootstrap, seed=self.settings.seed)
        except ChatflowError as exc:
            return Board(f"The leaderboard cannot be computed yet: {exc}" + footer, None, None, 0)
        skipped = f" ({len(problems)} malformed line(s) skipped)" if problems else ""
        n = len(votes)
        text = (f"**{n} vote{'s' * (n != 1)}, {len(votes.models)} models**{skipped}\n\n"
                + elo.table3_markdown(ratings) + "\n**Win rate of the row model against the column model** "
                "(ties count one half)\n\n" + elo.win_rate_markdown(ratings) + footer)
        return Board(text, elo.non_tie_figure(ratings), elo.win_rate_figure(ratings), len(votes))
