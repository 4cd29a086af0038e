"""SchNet configuration (Schütt et al. 2017) with the KD-GNN paper's SchNet settings as presets."""

from typing import ClassVar

from huggingface_hub.dataclasses import strict

from .configuration_gnn3d import AtomisticConfig


@strict
class SchNetConfig(AtomisticConfig):
    r"""
    Continuous-filter convolution network with scalar atom features only; forces are always -dE/dx (see
    `AtomisticConfig` for the shared settings; `num_rbf` is the number of Gaussians, `num_layers` of interaction
    blocks). Defaults are the SchNet paper's QM9 model (F=128, 6 interactions, 50 Gaussians), with a 5 Angstrom cutoff.

    num_filters: width of the continuous filters.

    Presets (`SchNetConfig.from_preset`): "oc20" (1024 hidden, 256 filters, 5 interactions, 200 Gaussians,
    6 Angstrom) and "coll" (128, 128, 6, 50, 12 Angstrom), the paper's Table 5.
    """

    model_type = "molformer_schnet"

    num_layers: int = 6
    num_rbf: int = 50
    num_filters: int = 128

    PRESETS: ClassVar[dict] = {
        "oc20": {"hidden_size": 1024, "num_filters": 256, "num_layers": 5, "num_rbf": 200, "cutoff": 6.0},
        "coll": {"hidden_size": 128, "num_filters": 128, "num_layers": 6, "num_rbf": 50, "cutoff": 12.0},
    }

    @property
    def edge_feature_size(self) -> int:
        return self.num_filters

    def __post_init__(self, **kwargs) -> None:
        if self.num_filters < 1:
            raise ValueError(f"num_filters must be positive, got {self.num_filters}")
        super().__post_init__(**kwargs)


__all__ = ["SchNetConfig"]
