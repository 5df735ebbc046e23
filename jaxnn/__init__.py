"""jaxnn: JAX reimplementations of four Uber AI Labs methods.

CoordConv (Liu et al. 2018), intrinsic dimension (Li et al. 2018), loss change
allocation (Lan et al. 2019) and plug-and-play language models (Dathathri et al.
2020), on shared data, models and a data-parallel training engine.
"""

from jaxnn._errors import JaxnnError
from jaxnn._runs import Run, load_run

__version__ = "0.1.0"
__all__ = ["JaxnnError", "Run", "__version__", "load_run"]
