"""The architecture search of a trained supernet (README.md, "Search").

config.py      SearchConfig (the settings of a run) and budget parsing
objectives.py  what is optimised: dynamic multi-exit or static single-exit networks, and the
               cost model (MACs or a latency table's milliseconds)
scoring.py     the Objective interface, ranking of measured records, cost formatting
evolution.py   the evolutionary search over the genes, shared among budgets
inner.py       the evolution on predicted scores alone that picks what to measure
predictor.py   the accuracy predictors (MLP, ridge) and Kendall's tau
selection.py   which predictor ranks a generation, by held-out tau, and the floor
generation.py  one generation's record (the predictor's quality) for the state and report
measurement.py a measured candidate and its threshold fits (cross-fitted for ranking)
store.py       every measured candidate, saved as it is measured (a run resumes from it)
outputs.py     pareto.json and the architecture files
display.py     pareto.png and the log's tables
blas.py        numpy's BLAS on one thread while the small predictors fit
run.py         run_search: all of the above on a workdir
"""
