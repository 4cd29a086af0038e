"""PaiNN configuration (Schütt et al. 2021) with the KD-GNN paper's PaiNN-big / PaiNN-small presets."""

from typing import ClassVar

from huggingface_hub.dataclasses import strict

from .configuration_gnn3d import AtomisticConfig


@strict
class PaiNNConfig(AtomisticConfig):
    r"""
    Polarizable atom interaction network: scalar and equivariant vector atom features (see `AtomisticConfig` for the
    shared settings). Defaults are the PaiNN paper's QM9 model (F=128, 3 blocks, 20 RBFs, 5 Angstrom).

    direct_forces: predict forces with a gated-equivariant head on the vector features (the paper's setting)
        instead of -dE/dx by autograd.

    Presets (`PaiNNConfig.from_preset`): "big" / "small" = the paper's OC20 PaiNN-big / PaiNN-small (512 / 256
    hidden, 6 / 4 layers, 128 RBFs, 12 Angstrom, direct forces); "coll-big" / "coll-small" = its COLL sizes (256 / 128).
    """

    model_type = "molformer_painn"

    direct_forces: bool = True

    PRESETS: ClassVar[dict] = {
        "big": {"hidden_size": 512, "num_layers": 6, "num_rbf": 128, "cutoff": 12.0, "direct_forces": True},
        "small": {"hidden_size": 256, "num_layers": 4, "num_rbf": 128, "cutoff": 12.0, "direct_forces": True},
        "coll-big": {"hidden_size": 256, "num_layers": 6, "num_rbf": 128, "cutoff": 12.0, "direct_forces": True},
        "coll-small": {"hidden_size": 128, "num_layers": 4, "num_rbf": 128, "cutoff": 12.0, "direct_forces": True},
    }

    @property
    def has_vector_features(self) -> bool:
        return True


__all__ = ["PaiNNConfig"]
