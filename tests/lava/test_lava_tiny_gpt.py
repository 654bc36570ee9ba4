"""The bundled example LM (two full transformer blocks: attention with Softmax, FFN, LayerNorms) gives the
NumPy reference's codes, bit for bit, in Lava's fixed-point simulator (``Loihi2SimCfg("fixed_pt")``).

This is the Lava backend's key requirement (issue 7): the default ``--target loihi2`` pipeline (dce,
asnc-fit, fuse-asnc, dce, partition; ``fixed`` requant) on ``examples/models/tiny_gpt.qdq.onnx``, one
input row. About 150 Lava processes and ~1100 timesteps: roughly 1.5 minutes on two CPU cores.
"""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest
from lava_env import REPO, needs_lava

import lasercc
from lasercc.backends.lava.lower import lower
from lasercc.errors import LasercError
from lasercc.passes.signed import SignedEncode
from lasercc.runtime import run_graph
from lasercc.testing import random_graph

MODELS = REPO / "examples" / "models"
pytestmark = pytest.mark.lava


@pytest.fixture(scope="module")
def tiny_gpt():
    art = lasercc.compile(str(MODELS / "tiny_gpt.qdq.onnx"), target="loihi2",
                          calibration=str(MODELS / "tiny_gpt.calib.npz"))
    with np.load(MODELS / "tiny_gpt.input.npz") as z:
        x = {k: z[k][:1] for k in z.files}
    return art, x


def test_tiny_gpt_lowers_every_block_part(tiny_gpt, tmp_path):
    art, _ = tiny_gpt
    out = art.save(tmp_path / "art")  # the runnable entry sits at OUT/lava/__main__.py
    assert (out / "lava" / "__main__.py").is_file()
    assert json.loads((out / "lava" / "network.json").read_text())["processes"]
    ops = Counter(n.op for n in art.graph.nodes)
    # attention (decode_mac score/value products, wta_max + asnc for Softmax), FFN (somas, fused GELU), norms
    assert {"soma", "soma_asnc", "decode_mac", "asnc", "wta_max", "gather"} <= set(ops)
    plan = lower(art.graph)
    counts = plan.summary()["counts"]
    assert counts["dense"] > 0 and counts["sink"] == len(art.graph.outputs)
    assert sum(counts[k] for k in ("gather", "soma", "decode_mac", "asnc", "wta")) == sum(
        ops[k] for k in ("gather", "soma", "soma_asnc", "decode_mac", "asnc", "wta_max"))


@needs_lava
def test_tiny_gpt_bit_exact_in_lava(tiny_gpt):
    from lasercc.backends.lava_runner import run_lava

    art, x = tiny_gpt
    ref = run_graph(art.graph, x)
    res = run_lava(art, x, timeout=600)
    for o in art.graph.outputs:
        assert res.codes[o].shape == ref.codes[o].shape
        np.testing.assert_array_equal(res.codes[o], ref.codes[o], err_msg=f"output {o}")
    lava = res.stats["lava"]
    assert lava["spikes_match_reference"] and lava["codes_match_reference"]
    assert sum(lava["spikes"].values()) > 0
    assert lava["timesteps"] == lava["period_steps"] and lava["steps_per_second"] > 0
    print(f"tiny_gpt in Lava: {lava['timesteps']} timesteps, {lava['processes']} processes, "
          f"{lava['steps_per_second']:.1f} timesteps/s, build {lava['build_seconds']:.1f} s")


def test_signed_encoding_is_rejected_in_one_line():
    g = random_graph(0, requant="fixed")
    res = SignedEncode(min_zero_point_fraction=0.0)(g)
    g = getattr(res, "graph", res)
    signed = [n.name for n in g.nodes if getattr(n.type, "encoding", None) == "signed"]
    assert signed
    with pytest.raises(LasercError) as e:
        lower(g)
    msg = str(e.value)
    assert "\n" not in msg and f"%{signed[0]}" in msg and "signed-encode" in msg
