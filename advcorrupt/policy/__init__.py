"""The adversary: action space, policy network, REINFORCE updater and sampling strategies."""

from .action_space import ActionSpace

__all__ = ["ActionSpace"]
