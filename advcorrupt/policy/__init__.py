"""The adversary: action space, policy network and its heads, REINFORCE updater, named adversaries
sampling strategies, and a diagnostic of how much a policy depends on the image."""

from .action_space import GROUPINGS, ActionSpace
from .adversaries import DEFAULT_ADVERSARY, Adversary, get_adversary, list_adversaries, register_adversary
from .diagnostics import image_dependence
from .heads import FlatHead, HierarchicalHead
from .network import PolicyNetwork
from .reinforce import PolicySample, Reinforce, sample_categorical
from .schedules import CurriculumStrategy, LevelScheduleStrategy, Schedule, parse_schedule, schedule_levels
from .strategies import (
    FixedStrategy,
    LearnedStrategy,
    NoneStrategy,
    RandomStrategy,
    Strategy,
    make_strategy,
)

__all__ = [
    "DEFAULT_ADVERSARY",
    "GROUPINGS",
    "ActionSpace",
    "CurriculumStrategy",
    "LevelScheduleStrategy",
    "Schedule",
    "parse_schedule",
    "schedule_levels",
    "Adversary",
    "FlatHead",
    "HierarchicalHead",
    "FixedStrategy",
    "LearnedStrategy",
    "NoneStrategy",
    "PolicyNetwork",
    "PolicySample",
    "RandomStrategy",
    "Reinforce",
    "Strategy",
    "get_adversary",
    "image_dependence",
    "list_adversaries",
    "make_strategy",
    "register_adversary",
    "sample_categorical",
]
