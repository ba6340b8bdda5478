"""Evaluation as in ChatFlow's Table 2, Figure 2 and Table 3.

``benchmarks`` reads MMLU / C-Eval / CMMLU / GAOKAO-Bench from their public release layouts,
``prompts`` builds k-shot prompts in each benchmark's language, ``scoring`` ranks the answer letters
by log-likelihood under a HuggingFace causal LM, ``run`` ties them together, ``over_training``
tracks accuracy over training tokens (Figure 2), ``figures`` plots Figures 1 and 2 from run logs and
results, and ``elo`` rates chat models from pairwise votes.
"""
