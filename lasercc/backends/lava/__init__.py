"""The Loihi 2 backend through Lava (lava-nc 0.10.0).

* :mod:`.lower`   -- graph -> network plan (pure NumPy: neuron groups, synapse matrices, index maps, schedule)
* :mod:`.procs`   -- Lava processes and bit-accurate fixed-point process models (needs lava-nc, Python 3.10)
* :mod:`.network` -- build and run a plan in ``Loihi2SimCfg(select_tag="fixed_pt")``
* :mod:`.run`     -- the runnable entry: ``python -m lasercc.backends.lava.run ARTIFACT --input x.npz``
* :mod:`.emit`    -- the ``lava/`` package written into a ``--target loihi2`` artifact

Nothing here imports Lava at package import time, so the main (Python 3.11) environment can lower and emit.
"""
