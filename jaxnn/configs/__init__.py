"""Every command's settings as typed configs, importable without JAX.

One frozen dataclass per command; the `jaxnn` CLI derives its flags, defaults,
help and checks from them (`jaxnn._config`), and a Python experiment config
(`--config exp.py`, a module whose `get_config()` returns one of these) can
build them without loading JAX. The method packages re-export them where they
are used (`jaxnn.train.TrainConfig`, `jaxnn.lca.LCAConfig`, ...).
"""

from jaxnn.configs._coordconv import TaskConfig
from jaxnn.configs._lca import LCAConfig
from jaxnn.configs._pplm import DiscriminatorConfig, GenerateConfig, PPLMConfig
from jaxnn.configs._subspace import SweepConfig
from jaxnn.configs._train import TrainConfig

__all__ = [
  "DiscriminatorConfig",
  "GenerateConfig",
  "LCAConfig",
  "PPLMConfig",
  "SweepConfig",
  "TaskConfig",
  "TrainConfig",
]
