"""``chatflow elo``: ratings of chat models from pairwise human votes (ChatFlow's Table 3).

Votes are JSON lines ``{"model_a": ..., "model_b": ..., "winner": "a" | "b" | "tie"}`` (the Chatbot
Arena spellings ``"model_a"``, ``"model_b"``, ``"tie (bothbad)"`` are accepted too). Two ratings:

* **Online Elo**, as arena platforms display it: votes applied one by one in file order,
  ``R_a += K (S_a - E_a)`` with ``E_a = 1 / (1 + 10^((R_b - R_a) / 400))`` and ``S_a`` = 1, 0 or 0.5.
  It depends on vote order and K.
* **Bradley-Terry** maximum likelihood, order-independent: ``P(i beats j) = p_i / (p_i + p_j)``,
  fitted by Hunter's (2004) MM iteration, a tie counted as half a win for each side, reported on the
  Elo scale ``initial + 400 log10 p_i`` centred on ``initial``; 95 % intervals from a bootstrap over
  votes. An optional prior (``--prior N``: N virtual ties of every model against an average model)
  keeps ratings finite for a model that never won or never lost.

Outputs: a Table-3-shaped markdown table, a win-rate matrix (JSON + PNG heat map), and each model's win
rate in non-tie votes (ties left out; the paper's Figure 3, a bar chart).
"""
from __future__ import annotations

import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..files import atomic_file, pyplot, read_jsonl, save_figure
from ..errors import ChatflowError, DataError
from ..options import option

WINNERS = {"a": 1.0, "model_a": 1.0, "b": 0.0, "model_b": 0.0, "tie": 0.5, "tie (bothbad)": 0.5}


@dataclass(frozen=True)
class Votes:
    models: list[str]           # sorted names
    a: np.ndarray               # index of model_a per vote
    b: np.ndarray               # index of model_b per vote
    score_a: np.ndarray         # 1 (a won), 0 (b won), 0.5 (tie)

    def __len__(self) -> int:
        return len(self.a)


def votes_from_records(records: list[tuple[str, str, float]]) -> Votes:
    models = sorted({m for a, b, _ in records for m in (a, b)})
    index = {m: i for i, m in enumerate(models)}
    return Votes(models, np.array([index[a] for a, _, _ in records], dtype=np.int64),
                 np.array([index[b] for _, b, _ in records], dtype=np.int64),
                 np.array([s for _, _, s in records], dtype=np.float64))


def read_votes(path: str | Path, strict: bool = False) -> tuple[Votes, list[str]]:
    """Votes of a JSONL file and the problems of lines skipped (``strict``: the first one raises)."""
    records, problems = [], []
    try:
        for line_no, rec in read_jsonl(path, on_bad_line="yield"):
            location = f"{path}:{line_no}"
            try:
                if isinstance(rec, DataError):
                    raise ValueError(rec.reason)
                a, b, w = rec["model_a"], rec["model_b"], rec["winner"]
                if not (isinstance(a, str) and isinstance(b, str) and a.strip() and b.strip()):
                    raise ValueError("model_a and model_b must be non-empty strings")
                if a == b:
                    raise ValueError(f"a model against itself ({a!r})")
                if not isinstance(w, str) or w.strip().lower() not in WINNERS:
                    raise ValueError(f"winner {w!r} is not one of 'a', 'b', 'tie'")
            except (KeyError, TypeError, ValueError) as exc:
                reason = f"missing field {exc}" if isinstance(exc, KeyError) else str(exc)
                if strict:
                    raise DataError(reason, location) from None
                problems.append(f"{location}: {reason}")
                continue
            records.append((a, b, WINNERS[w.strip().lower()]))
    except FileNotFoundError:
        raise ChatflowError(f"votes file {path} not found") from None
    if not records:
        raise ChatflowError(f"{path}: no valid votes" + (f" ({len(problems)} bad lines, first: {problems[0]})"
                                                         if problems else ""))
    return votes_from_records(records), problems


def online_elo(votes: Votes, k: float = 4.0, initial: float = 1000.0, scale: float = 400.0) -> np.ndarray:
    """Sequential Elo over votes in their order."""
    ratings = np.full(len(votes.models), float(initial))
    for a, b, s in zip(votes.a.tolist(), votes.b.tolist(), votes.score_a.tolist()):
        expected_a = 1.0 / (1.0 + 10.0 ** ((ratings[b] - ratings[a]) / scale))
        ratings[a] += k * (s - expected_a)
        ratings[b] -= k * (s - expected_a)
    return ratings


def pair_counts(votes: Votes, weights: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(wins[i, j] = points of i against j, games[i, j]); ``weights`` = bootstrap multiplicities."""
    m = len(votes.models)
    w = np.ones(len(votes)) if weights is None else weights
    wins = np.zeros((m, m))
    np.add.at(wins, (votes.a, votes.b), w * votes.score_a)
    np.add.at(wins, (votes.b, votes.a), w * (1.0 - votes.score_a))
    return wins, wins + wins.T


def decisive_counts(votes: Votes) -> np.ndarray:
    """[i, j] = votes in which i beat j outright (score 1 for i); ties count nowhere."""
    decisive = np.zeros((len(votes.models),) * 2)
    a_won, b_won = votes.score_a == 1.0, votes.score_a == 0.0
    np.add.at(decisive, (votes.a[a_won], votes.b[a_won]), 1.0)
    np.add.at(decisive, (votes.b[b_won], votes.a[b_won]), 1.0)
    return decisive


def _infinite_rows(wins: np.ndarray, games: np.ndarray, prior: float) -> np.ndarray:
    """Per table of a stack ``(..., m, m)``: whether some model that played never won or never lost (its maximum
    likelihood strength is 0 or infinite); never with a prior."""
    if prior > 0:
        return np.zeros(wins.shape[:-2], dtype=bool)
    total, played = wins.sum(-1), games.sum(-1)
    return np.any((played > 0) & ((total <= 0) | (total >= played)), axis=-1)


def bradley_terry_batch(wins: np.ndarray, games: np.ndarray, prior: float = 0.0, tol: float = 1e-10,
                        max_iter: int = 100_000) -> np.ndarray:
    """Log-strengths (natural log, mean 0) maximising the Bradley-Terry likelihood of each table of a stack:
    ``wins``/``games`` of shape (K, m, m) -> (K, m), by Hunter's (2004) MM iteration.

    ``prior`` adds that many virtual ties of every model against a fixed model of strength 1. Every table runs
    the same arithmetic, row for row, as it would alone (a table stops when its own largest change in log
    strength is below ``tol``), vectorised over the tables still running. Tables where a model never won or
    never lost (without a prior) must be left out by the caller (:func:`_infinite_rows`).
    """
    wins, games = np.asarray(wins, dtype=np.float64), np.asarray(games, dtype=np.float64)
    k, m = wins.shape[0], wins.shape[-1]
    total = wins.sum(2) + prior / 2.0
    out = np.ones((k, m))
    active = np.arange(k)
    p, g, t = out.copy(), games, total
    for _ in range(max_iter):
        if not len(active):
            break
        denom = (g / (p[:, :, None] + p[:, None, :])).sum(2) + prior / (p + 1.0)
        new = np.where(denom > 0, t / np.where(denom > 0, denom, 1.0), p)
        if prior <= 0:
            new = new / np.exp(np.mean(np.log(new), axis=1))[:, None]
        done = np.max(np.abs(np.log(new) - np.log(p)), axis=1) < tol
        out[active] = new
        if done.any():
            keep = ~done
            active, p, g, t = active[keep], new[keep], g[keep], t[keep]
        else:
            p = new
    logp = np.log(out)
    return logp - logp.mean(axis=1, keepdims=True)


def bradley_terry(wins: np.ndarray, games: np.ndarray, prior: float = 0.0, tol: float = 1e-10,
                  max_iter: int = 100_000) -> np.ndarray:
    """Log-strengths (natural log, mean 0) maximising the Bradley-Terry likelihood (MM algorithm) of one table
    (:func:`bradley_terry_batch`); a model that never won or never lost without a prior is an error."""
    if _infinite_rows(wins, games, prior):
        raise ChatflowError("a model never won or never lost: its Bradley-Terry rating is infinite; "
                            "pass --prior 1 (one virtual tie against an average model)")
    return bradley_terry_batch(wins[None], games[None], prior, tol, max_iter)[0]


class VoteKinds:
    """The votes by kind (the pair and the outcome: at most 3 m (m - 1) kinds, whatever the number of votes) and
    each kind's points in the (m, m) table :func:`pair_counts` makes, flattened."""

    def __init__(self, votes: Votes):
        m = len(votes.models)
        kinds, kind_of_vote = np.unique(np.stack([votes.a, votes.b, 2 * votes.score_a]).T, axis=0,
                                        return_inverse=True)
        self.models = m
        self.kind_of_vote = kind_of_vote.reshape(-1)
        self.count = len(kinds)
        a, b, score = kinds[:, 0].astype(np.int64), kinds[:, 1].astype(np.int64), kinds[:, 2] / 2.0
        self.points = np.zeros((self.count, m * m))
        np.add.at(self.points, (np.arange(self.count), a * m + b), score)
        np.add.at(self.points, (np.arange(self.count), b * m + a), 1.0 - score)

    def wins(self, resamples: np.ndarray) -> np.ndarray:
        """The wins table (:func:`pair_counts`) of each bootstrap resample, as a (K, m, m) stack: ``resamples``
        (K, n) are vote indices drawn with replacement. Every count is a multiple of 1/2, so the sums are exact in
        any order: the tables equal those of each resample's multiplicities."""
        counts = np.empty((len(resamples), self.count))
        for row, drawn in enumerate(resamples):       # row by row: small arrays that stay in cache
            counts[row] = np.bincount(self.kind_of_vote[drawn], minlength=self.count)
        return (counts @ self.points).reshape(len(resamples), self.models, self.models)


def bootstrap_ratings(votes: Votes, bootstrap: int, prior: float = 0.0, initial: float = 1000.0,
                      scale: float = 400.0, seed: int = 0) -> np.ndarray:
    """Bradley-Terry ratings (Elo scale) of ``bootstrap`` resamples of the votes, drawn with replacement from
    ``numpy.random.default_rng(seed)`` one resample after another; resamples where some model never won or never
    lost (no prior: unbounded ratings) are left out. The resamples are counted a block at a time (about 16 MB of
    vote indices each), then fitted together (:func:`bradley_terry_batch`, about 64 MB of tables at a time)."""
    rng = np.random.default_rng(seed)
    n, m = len(votes), len(votes.models)
    kinds = VoteKinds(votes)
    wins = np.empty((bootstrap, m, m))
    block = max(1, (16 << 20) // (8 * max(n, 1)))
    for start in range(0, bootstrap, block):
        resamples = rng.integers(0, n, (min(block, bootstrap - start), n))   # the stream of one draw per resample
        wins[start:start + len(resamples)] = kinds.wins(resamples)
    games = wins + wins.transpose(0, 2, 1)
    finite = np.flatnonzero(~_infinite_rows(wins, games, prior))
    fit = max(1, (64 << 20) // (8 * 4 * m * m))
    parts = [to_elo_scale(bradley_terry_batch(wins[rows], games[rows], prior), initial, scale)
             for rows in np.array_split(finite, max(1, -(-len(finite) // fit)))]
    return np.concatenate(parts) if len(finite) else np.empty((0, m))


def to_elo_scale(log_strength: np.ndarray, initial: float = 1000.0, scale: float = 400.0) -> np.ndarray:
    return initial + scale * log_strength / math.log(10.0)


@dataclass
class Ratings:
    models: list[str]
    online: np.ndarray
    bt: np.ndarray
    ci_low: np.ndarray
    ci_high: np.ndarray
    win_rate: np.ndarray        # [i, j]: share of points i took from games against j (NaN: never met)
    games: np.ndarray
    level: float
    decisive: np.ndarray        # [i, j]: votes in which i beat j outright (ties and "both bad" left out)

    def non_tie(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per model: (outright wins, non-tie votes, win rate in non-tie votes; NaN when it has none)."""
        wins = self.decisive.sum(1)
        games = wins + self.decisive.sum(0)
        with np.errstate(invalid="ignore", divide="ignore"):
            return wins, games, np.where(games > 0, wins / np.where(games > 0, games, 1), np.nan)

    def order(self) -> list[int]:
        return sorted(range(len(self.models)), key=lambda i: (-self.bt[i], self.models[i]))


def rate(votes: Votes, k: float = 4.0, initial: float = 1000.0, scale: float = 400.0, prior: float = 0.0,
         bootstrap: int = 1000, level: float = 0.95, seed: int = 0) -> Ratings:
    """Online Elo, Bradley-Terry ratings with bootstrap intervals, and the win-rate matrix."""
    if not 0 < level < 1:
        raise ChatflowError(f"confidence level must be in (0, 1), got {level}")
    wins, games = pair_counts(votes)
    bt = to_elo_scale(bradley_terry(wins, games, prior), initial, scale)
    arr = bootstrap_ratings(votes, bootstrap, prior, initial, scale, seed)
    if bootstrap and len(arr) < 0.9 * bootstrap:
        raise ChatflowError(f"only {len(arr)} of {bootstrap} bootstrap resamples had finite ratings; "
                            "pass --prior 1")
    if len(arr):
        lo, hi = np.percentile(arr, [100 * (1 - level) / 2, 100 * (1 + level) / 2], axis=0)
    else:
        lo = hi = np.full(len(bt), np.nan)
    with np.errstate(invalid="ignore", divide="ignore"):
        win_rate = np.where(games > 0, wins / games, np.nan)
    return Ratings(votes.models, online_elo(votes, k, initial, scale), bt, lo, hi, win_rate, games, level,
                   decisive_counts(votes))


def table3_markdown(r: Ratings) -> str:
    pct = round(100 * r.level)
    lines = [f"| Rank | Model | Elo (online) | Bradley-Terry | {pct}% CI | Votes | Win rate | Non-tie win rate |",
             "|---:|---|---:|---:|---|---:|---:|---:|"]
    _, non_tie_games, non_tie_rate = r.non_tie()
    for rank, i in enumerate(r.order(), 1):
        n = r.games[i].sum()
        points = np.nansum(r.win_rate[i] * r.games[i])
        non_tie = "–" if np.isnan(non_tie_rate[i]) else f"{100 * non_tie_rate[i]:.1f}% of {int(non_tie_games[i])}"
        lines.append(f"| {rank} | {r.models[i]} | {r.online[i]:.0f} | {r.bt[i]:.0f} | "
                     f"{r.ci_low[i]:.0f} – {r.ci_high[i]:.0f} | {int(n)} | {100 * points / n:.1f}% | {non_tie} |")
    return "\n".join(lines) + "\n"


def win_rate_markdown(r: Ratings) -> str:
    order = r.order()
    names = [r.models[i] for i in order]
    lines = ["| row beats column | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
    for i in order:
        cells = ["–" if i == j or np.isnan(r.win_rate[i, j]) else f"{100 * r.win_rate[i, j]:.0f}%" for j in order]
        lines.append(f"| {r.models[i]} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def ratings_json(r: Ratings) -> dict:
    wins, non_tie_games, non_tie_rate = r.non_tie()

    def number(x: float) -> float | None:
        return None if np.isnan(x) else float(x)

    return {"models": [{"model": r.models[i], "online_elo": float(r.online[i]), "bradley_terry": float(r.bt[i]),
                        "ci_low": float(r.ci_low[i]), "ci_high": float(r.ci_high[i]), "votes": int(r.games[i].sum()),
                        "non_tie_wins": int(wins[i]), "non_tie_votes": int(non_tie_games[i]),
                        "non_tie_win_rate": number(non_tie_rate[i])}
                       for i in r.order()],
            "confidence_level": r.level,
            "win_rate": {r.models[i]: {r.models[j]: number(r.win_rate[i, j]) for j in r.order() if j != i}
                         for i in r.order()},
            "non_tie_wins": {r.models[i]: {r.models[j]: int(r.decisive[i, j]) for j in r.order() if j != i}
                             for i in r.order()}}


def close_figures(*figures) -> None:
    for fig in figures:
        if fig is not None:
            pyplot().close(fig)


def win_rate_figure(r: Ratings):
    """Heat map of the win-rate matrix (ties = 1/2), models ordered by Bradley-Terry rating."""
    plt = pyplot()
    order = r.order()
    names = [r.models[i] for i in order]
    matrix = r.win_rate[np.ix_(order, order)]
    size = max(4.0, 0.7 * len(names) + 2)
    fig, ax = plt.subplots(figsize=(size + 1, size))
    im = ax.imshow(np.ma.masked_invalid(matrix), cmap="RdBu", vmin=0, vmax=1)
    ax.set_xticks(range(len(names)), names, rotation=45, ha="right")
    ax.set_yticks(range(len(names)), names)
    ax.set_xlabel("opponent (model B)")
    ax.set_ylabel("model A")
    if len(names) <= 15:
        for y in range(len(names)):
            for x in range(len(names)):
                if not np.isnan(matrix[y, x]):
                    ax.text(x, y, f"{matrix[y, x]:.2f}", ha="center", va="center", fontsize=8)
    fig.colorbar(im, ax=ax, label="win rate of A against B (ties = 1/2)")
    ax.set_title("Pairwise win rates, ordered by Bradley-Terry rating")
    fig.tight_layout()
    return fig


def non_tie_figure(r: Ratings):
    """Figure 3: each model's win rate in its non-tie votes, bars in rating order, labelled wins/votes."""
    plt = pyplot()
    order = r.order()
    wins, games, rates = r.non_tie()
    fig, ax = plt.subplots(figsize=(max(6.0, 0.9 * len(order) + 2), 3.6))
    heights = [0.0 if np.isnan(rates[i]) else 100 * rates[i] for i in order]
    bars = ax.bar(range(len(order)), heights, color="#4c72b0")
    for bar, i in zip(bars, order):
        label = "no non-tie votes" if np.isnan(rates[i]) else f"{100 * rates[i]:.0f}% ({int(wins[i])}/{int(games[i])})"
        ax.annotate(label, (bar.get_x() + bar.get_width() / 2, bar.get_height()), ha="center", va="bottom",
                    fontsize=8, xytext=(0, 2), textcoords="offset points")
    ax.set_xticks(range(len(order)), [r.models[i] for i in order], rotation=30 if len(order) > 4 else 0,
                  ha="right" if len(order) > 4 else "center")
    ax.set_ylim(0, 110)
    ax.axhline(50, color="grey", lw=0.8, ls="--")
    ax.set_ylabel("win rate in non-tie votes (%)")
    ax.set_title("Win rate in non-tie votes (Figure 3)")
    fig.tight_layout()
    return fig


def plot_win_rates(r: Ratings, path: str | Path) -> None:
    save_figure(win_rate_figure(r), path)


def plot_non_tie_win_rates(r: Ratings, path: str | Path) -> None:
    save_figure(non_tie_figure(r), path)


@dataclass
class EloOptions:
    votes: str = option(help="JSON lines of {\"model_a\", \"model_b\", \"winner\": \"a\"|\"b\"|\"tie\"}",
                        positional=True)
    k: float = option(4.0, help="online Elo K factor (rating points per unit surprise)")
    initial: float = option(1000.0, help="initial online Elo rating, and the centre of the Bradley-Terry scale")
    scale: float = option(400.0, help="Elo scale: a 'scale'-point gap means 10:1 odds")
    prior: float = option(0.0, help="virtual ties of each model against an average model (Bradley-Terry "
                                    "regularisation; needed when a model never won or never lost)")
    bootstrap: int = option(1000, help="bootstrap resamples of the votes for the intervals (0: none)")
    level: float = option(0.95, help="confidence level of the intervals")
    seed: int = option(0, help="bootstrap random seed")
    output: str = option("", help="output prefix: writes PREFIX.json, PREFIX.md, PREFIX_win_rates.png (matrix) and "
                                  "PREFIX_non_tie_win_rates.png (Figure 3)")
    strict: bool = option(False, help="fail on the first malformed vote line instead of skipping it")


def elo(opts: EloOptions) -> Ratings:
    """Rate chat models from pairwise votes: online Elo and a Bradley-Terry fit with bootstrap intervals (Table 3),
    the pairwise win-rate matrix and each model's win rate in non-tie votes (Figure 3)."""
    if opts.k <= 0 or opts.scale <= 0 or opts.prior < 0 or opts.bootstrap < 0:
        raise ChatflowError("--k and --scale must be > 0, --prior and --bootstrap >= 0")
    votes, problems = read_votes(opts.votes, strict=opts.strict)
    if problems:
        print(f"{len(problems)} malformed vote line(s) skipped:", file=sys.stderr)
        for p in problems[:10]:
            print(f"  {p}", file=sys.stderr)
    ratings = rate(votes, opts.k, opts.initial, opts.scale, opts.prior, opts.bootstrap, opts.level, opts.seed)
    table = table3_markdown(ratings)
    print(f"{len(votes)} votes, {len(votes.models)} models\n")
    print(table)
    print(win_rate_markdown(ratings))
    if opts.output:
        prefix = Path(opts.output)
        report = ratings_json(ratings)
        report.update(votes=len(votes), skipped_lines=problems,
                      settings={"k": opts.k, "initial": opts.initial, "scale": opts.scale, "prior": opts.prior,
                                "bootstrap": opts.bootstrap, "seed": opts.seed})
        with atomic_file(f"{prefix}.json", encoding="utf-8") as handle:
            handle.write(json.dumps(report, ensure_ascii=False, indent=2) + "\n")
        with atomic_file(f"{prefix}.md", encoding="utf-8") as handle:
            handle.write(table + "\n" + win_rate_markdown(ratings))
        plot_win_rates(ratings, f"{prefix}_win_rates.png")
        plot_non_tie_win_rates(ratings, f"{prefix}_non_tie_win_rates.png")
        print(f"wrote {prefix}.json, {prefix}.md, {prefix}_win_rates.png, {prefix}_non_tie_win_rates.png",
              file=sys.stderr)
    return ratings
