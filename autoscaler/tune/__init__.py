"""``tune``: fit a team's policy to its own traffic, judged on traffic the search never saw.

A driver of the simulator: every candidate is the team's policy with some numbers changed, validated
by the policy loader, and run through :func:`autoscaler.sim.run.simulate` (the same ``core.step`` as
the live service). Modules, each one job:

* ``space``      the tunable parameters and their ranges (command line, tuning file, defaults per kind)
* ``candidates`` candidate policies built through the loader
* ``split``      fit and held-out parts, the rolling origin
* ``evaluate``   one candidate, one simulation: the unit every executor runs
* ``executors``  local processes, in process, Ray tasks; outcomes in the order given
* ``search``     Optuna's TPE, asked and told in fixed-size batches (deterministic per seed)
* ``driver``     per fold: fit phase (baselines, searches, explanations), held-out phase (the report)
* ``history``    a request trace from recorded Prometheus series (what ``backtest`` reads)
* ``yamledit``   the tuned values set in the team's own file, layout and comments kept
* ``output``     tuned.yaml, tuned.diff, summary.md, frontier.png, report.json

Optuna (and Ray, for ``--ray-address``) come with the ``tune`` extra and are imported only when a
search runs.
"""
