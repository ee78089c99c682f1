"""The run recipe: one YAML file, typed and validated once (load.py), one section per stage
(sections.py), the generation roles (engine.py), and the marks that derive each stage's fingerprint from
its section (base.py). docs/config.md lists every key; it is generated from the fields' descriptions
(humback.config.reference)."""

from humback.config.base import (
    SELECTION,
    SPEED,
    ConfigError,
    effect,
    fingerprint,
    fingerprint_settings,
)
from humback.config.budget import BudgetConfig, Limits
from humback.config.engine import (
    BACKENDS,
    EngineConfig,
    EngineKeys,
    GenerationConfig,
    RoleConfig,
    is_loopback,
    redact_url,
)
from humback.config.load import MOVED, excerpt, load_config
from humback.config.sections import (
    SIGNALS,
    AugmentConfig,
    ClusterConfig,
    CurateConfig,
    EvalConfig,
    RewriteConfig,
    RunConfig,
    SeedConfig,
    SegmentConfig,
    TrainConfig,
)

__all__ = [
    "BACKENDS",
    "MOVED",
    "SELECTION",
    "SIGNALS",
    "SPEED",
    "AugmentConfig",
    "BudgetConfig",
    "ClusterConfig",
    "ConfigError",
    "CurateConfig",
    "EngineConfig",
    "EngineKeys",
    "EvalConfig",
    "GenerationConfig",
    "Limits",
    "RewriteConfig",
    "RoleConfig",
    "RunConfig",
    "SeedConfig",
    "SegmentConfig",
    "TrainConfig",
    "effect",
    "excerpt",
    "fingerprint",
    "fingerprint_settings",
    "is_loopback",
    "load_config",
    "redact_url",
]
