"""``chatflow search``: choose a mixture's schedule (alpha, beta, T_grow, or piecewise knots) from small proxy runs.

One idea per module, in the order the search runs:

- :mod:`.space`: the search space (bounds or fixed values per parameter, T_grow and knots as fractions of the
  run) and its seeded, extensible space-filling design (a scrambled Halton sequence);
- :mod:`.objective`: the objective and constraints, written in the mixture's group names;
- :mod:`.proxies`: each sampled schedule as one ordinary ``chatflow train`` run in its own folder (resumable,
  several at once, or printed for a scheduler), and the held-out losses collected from finished folders;
- :mod:`.model`: the fitted model from a schedule's derived features (each group's cumulative exposure) to each
  group's validation loss, measured by leave-one-out cross-validation over the proxy runs;
- :mod:`.optimize`: the best schedule of the space under the objective, on the fitted model;
- :mod:`.check`: the chosen, reference and static schedules re-run on the test split, and the ladder;
- :mod:`.report`: ``report.md``, plots and ``report.json``;
- :mod:`.folder`: the command's options and the search's folder (what fixes its runs, its mixtures, training,
  printing or collecting them);
- :mod:`.run`: the command, tying the stages together.

The layer sits beside :mod:`chatflow_plugin.clo` and :mod:`chatflow_plugin.evaluation`: it reads data/ (mixtures,
schedules, baselines) and runs hosts/hf's trainer as a command; demo/ and cli sit above it.
"""
