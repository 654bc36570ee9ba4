"""The one home of every arithmetic rule that turns codes into codes.

Every backend (NumPy reference, torch, Lava) calls these functions. They accept NumPy arrays or
torch tensors (the array namespace is picked from the data, see ``_xp.py``), so the torch executor
runs the very same rules on CPU or CUDA rather than a port; Lava's fixed-point process models are
checked against them by the test suite. If two backends disagree, one of them bypassed this
package.
"""

from lasercc.semantics.asnc import asnc_evaluate, asnc_segment_index
from lasercc.semantics.bse import bse_decode, bse_encode, bse_encode_if, popcount
from lasercc.semantics.quant import code_range, dequantize, quantize
from lasercc.semantics.requant import fixed_multiplier, requantize, requantize_exact_f32, requantize_scale

__all__ = [
    "asnc_evaluate",
    "asnc_segment_index",
    "bse_decode",
    "bse_encode",
    "bse_encode_if",
    "code_range",
    "dequantize",
    "fixed_multiplier",
    "popcount",
    "quantize",
    "requantize",
    "requantize_exact_f32",
    "requantize_scale",
]
