"""Hardware models. :mod:`lasercc.hw.loihi2` is the Loihi 2 resource model the partitioner uses."""

from lasercc.hw.loihi2 import SYSTEMS, CoreSpec, Loihi2Spec, MeshSpec, SystemSpec, load_spec

__all__ = ["SYSTEMS", "CoreSpec", "Loihi2Spec", "MeshSpec", "SystemSpec", "load_spec"]
