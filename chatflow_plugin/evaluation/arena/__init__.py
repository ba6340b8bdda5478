"""``chatflow arena``: a local blind arena for the paper's human evaluation (Sec. 3.3, Table 3, Figure 3).

People chat with two anonymous models side by side and vote; the votes go to the JSONL that
``chatflow elo`` reads. One module per job:

* :mod:`.votes`: the votes file (one durable, never torn line per vote; restart continues it);
* :mod:`.pairing`: which two models a round gets, balanced over pairs and sides;
* :mod:`.chat`: one streamed answer of one model in its template (ChatFlow's or the tokenizer's);
* :mod:`.workers`: one thread per model, one generation at a time, a visible queue;
* :mod:`.rounds`: the rules: rounds, turns, limits, votes (no web code);
* :mod:`.leaderboard`: the leaderboard tab, computed by ``chatflow elo``'s functions;
* :mod:`.app`: the Gradio page;
* :mod:`.serve`: the options, :func:`~.serve.serve_arena` and the command line;
* :mod:`.client`: drives a running arena from Python (scripted smoke runs, tests).
"""
