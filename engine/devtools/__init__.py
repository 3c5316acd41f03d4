"""Tools for people writing rule packs and trying the engine, outside the engine's data flow:
the synthetic demo city (demo.py, `rectify demo`) and the rule-pack examples runner
(examples.py, `python -m engine.devtools.examples`)."""
