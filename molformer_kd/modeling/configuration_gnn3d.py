"""Settings shared by the 3D energy/force GNNs (SchNet, PaiNN): geometry, energy normalization and the task loss."""

from typing import ClassVar

from huggingface_hub.dataclasses import strict
from transformers import PreTrainedConfig

_ENERGY_LOSSES = ("mae", "mse")
_FORCE_LOSSES = ("mae", "mse", "l2mae")


@strict
class AtomisticConfig(PreTrainedConfig):
    r"""
    Base of `SchNetConfig` and `PaiNNConfig` (not registered itself).

    hidden_size: width F of the scalar atom features.
    num_layers: number of interaction (message-passing) blocks.
    num_rbf: number of radial basis functions (SchNet: Gaussians; PaiNN: sine functions).
    cutoff: Angstrom; atoms of the same molecule closer than this are connected (the paper's molecules are small
        enough that the 50-neighbour cap of the OC20 settings never binds, so there is none).
    max_atomic_number: size of the atom-type embedding minus one (row 0 is padding).
    atom_reference_energies: eV per element, indexed by atomic number (`data.xtb.fit_atom_reference_energies`),
        added to every atom's predicted energy; None = no references.
    energy_shift, energy_scale: per-atom energy = energy_scale * network output + energy_shift + reference.
    hydrogens: whether the model reads the hydrogens of a property record (`h_pos`) after its SMILES token atoms
        (`tokenization.PointCloudFeaturizer`); False reads the token atoms alone, as the graph models do. The point
        clouds of the energy/force task always hold every atom.
    energy_loss ("mae" | "mse"), force_loss ("mae" | "mse" | "l2mae", the mean per-atom error norm used by the OC20
        code), energy_loss_weight (a_E), force_loss_weight (a_F): the task loss a_E L_E + a_F L_F (KD-GNN eq. 1);
        the paper weights forces 100 and energy 1.
    """

    hidden_size: int = 128
    num_layers: int = 3
    num_rbf: int = 20
    cutoff: float | int = 5.0
    max_atomic_number: int = 100
    hydrogens: bool = True
    atom_reference_energies: list[float | int] | None = None
    energy_shift: float | int = 0.0
    energy_scale: float | int = 1.0
    energy_loss: str = "mae"
    force_loss: str = "l2mae"
    energy_loss_weight: float | int = 1.0
    force_loss_weight: float | int = 100.0

    PRESETS: ClassVar[dict] = {}

    def __post_init__(self, **kwargs) -> None:
        if self.hidden_size < 2 or self.hidden_size % 2:
            raise ValueError(f"hidden_size must be an even number >= 2, got {self.hidden_size}")
        if self.num_layers < 1 or self.num_rbf < 2:
            raise ValueError(f"need num_layers >= 1 and num_rbf >= 2, got {self.num_layers} and {self.num_rbf}")
        if self.cutoff <= 0:
            raise ValueError(f"cutoff must be positive (Angstrom), got {self.cutoff}")
        if self.energy_loss not in _ENERGY_LOSSES:
            raise ValueError(f"energy_loss must be one of {_ENERGY_LOSSES}, got {self.energy_loss!r}")
        if self.force_loss not in _FORCE_LOSSES:
            raise ValueError(f"force_loss must be one of {_FORCE_LOSSES}, got {self.force_loss!r}")
        super().__post_init__(**kwargs)

    @property
    def edge_feature_size(self) -> int:
        """Width of the `edge_features` the model outputs (its last layer's scalar messages)."""
        return self.hidden_size

    @property
    def has_vector_features(self) -> bool:
        """Whether the model outputs equivariant `vector_features` (B, N, 3, hidden_size)."""
        return False

    @classmethod
    def from_preset(cls, name: str, **overrides):
        """A configuration of the KD-GNN paper (Tables 4-5); keyword arguments override single settings."""
        if name not in cls.PRESETS:
            raise ValueError(f"unknown {cls.__name__} preset {name!r}; known: {', '.join(cls.PRESETS)}")
        return cls(**{**cls.PRESETS[name], **overrides})
