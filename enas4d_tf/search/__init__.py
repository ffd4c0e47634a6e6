"""The architecture search of a trained supernet (README.md, "Search").

config.py      SearchConfig (the settings of a run) and budget parsing
objectives.py  what is optimised: dynamic multi-exit or static single-exit networks
evolution.py   the evolutionary search over the genes, shared among budgets
predictor.py   the accuracy predictor that ranks children before they are measured
store.py       every measured candidate, saved as it is measured (a run resumes from it)
outputs.py     pareto.json, pareto.png, the architecture files and the log table
run.py         run_search: all of the above on a workdir
"""
