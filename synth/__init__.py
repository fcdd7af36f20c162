"""The synthesis flow of ``defa-hw synth``: Yosys area, ECP5 place and route, reports and
baselines (``synth/flow.py``), with the liberty file and baselines it reads."""
