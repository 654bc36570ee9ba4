"""Adaptive Spiking Neural Codec (ASNC) tables: fitting nonlinearities as integer piecewise-affine maps.

``fit(fn, input_q=..., output_q=...)`` returns an :class:`ASNCTable` whose integers follow the one
shared evaluation rule (:func:`lasercc.semantics.asnc_evaluate`); ``ASNCTable.lookup_table`` is the
exact quantized function (the "ideal" reference). Note that ``lasercc.asnc.fit`` is the function;
the module that defines it is reached as ``from lasercc.asnc.fit import ...``.
"""

from __future__ import annotations

from lasercc.asnc.distribution import ASNCFitError, Q, span_q
from lasercc.asnc.fit import fit, span_output_q
from lasercc.asnc.functions import FUNCTIONS, UnknownFunctionError, register_function
from lasercc.asnc.table import ASNCTable, exact_lut

__all__ = [
    "ASNCFitError", "ASNCTable", "FUNCTIONS", "Q", "UnknownFunctionError", "exact_lut", "fit", "register_function",
    "span_output_q", "span_q",
]
