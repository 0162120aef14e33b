"""The adversary: action space, policy network, REINFORCE updater and sampling strategies."""

from .action_space import GROUPINGS, ActionSpace
from .network import PolicyNetwork
from .reinforce import PolicySample, Reinforce, sample_categorical
from .strategies import (
    FixedStrategy,
    LearnedStrategy,
    NoneStrategy,
    RandomStrategy,
    Strategy,
    make_strategy,
)

__all__ = [
    "GROUPINGS",
    "ActionSpace",
    "FixedStrategy",
    "LearnedStrategy",
    "NoneStrategy",
    "PolicyNetwork",
    "PolicySample",
    "RandomStrategy",
    "Reinforce",
    "Strategy",
    "make_strategy",
    "sample_categorical",
]
