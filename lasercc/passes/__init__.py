"""Graph -> Graph passes: the infrastructure (:mod:`lasercc.passes.base`) and the built-in passes.

Built-in pass modules register themselves when first looked up (``load_builtins``), so importing
this package stays cheap and a plugin can import :mod:`lasercc.passes.base` without cycles.
"""

from lasercc.passes.base import (
    PASSES,
    OptionInfo,
    Pass,
    PassManager,
    PassRecord,
    PassResult,
    PassVerifyError,
    PipelineError,
    all_passes,
    get_pass,
    make_pass,
    option,
    parse_pipeline,
    register_pass,
    run_passes,
)
from lasercc.passes.opt import opt_graph, opt_text

__all__ = [
    "PASSES", "OptionInfo", "Pass", "PassManager", "PassRecord", "PassResult", "PassVerifyError", "PipelineError",
    "all_passes", "get_pass", "make_pass", "opt_graph", "opt_text", "option", "parse_pipeline", "register_pass",
    "run_passes",
]
