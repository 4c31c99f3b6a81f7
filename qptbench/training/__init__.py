"""Training: the one loop every method trains with (``loop.py``) and QPT's training specifics
(``qpt.py``: run config, sample preparation, the implicit DFT loss, the predictor).

Imports from dft, data and models (and the shared helpers), never from evaluation, report or cli:
an evaluation during training is a function handed to the loop.
"""
