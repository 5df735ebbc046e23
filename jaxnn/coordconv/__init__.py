"""CoordConv: convolutions that see their own coordinates (Liu et al., 2018).

`add_coords(x)` appends `xx, yy` (and optionally `rr`) channels in exactly
[-1, 1] to 1D/2D/3D inputs; `CoordConv1D/2D/3D` and `CoordConvTranspose` are
Flax NNX layers over it; the Not-so-Clevr task models and `run_task` reproduce
the paper's coordinate classification, regression and rendering results.

References:
  Liu, Lehman, Molino, Such, Frank, Sergeev, Yosinski. "An intriguing failing
  of convolutional neural networks and the CoordConv solution", NeurIPS 2018,
  https://arxiv.org/abs/1807.03247.
"""

from jaxnn.configs._coordconv import held_out_mask
from jaxnn.coordconv._coords import (
  add_coords,
  coordinate_channels,
  coordinate_ramp,
  num_coord_channels,
  tile_coords,
)
from jaxnn.coordconv._layers import CoordConv1D, CoordConv2D, CoordConv3D, CoordConvTranspose
from jaxnn.coordconv._models import (
  ConvRegressor,
  CoordConvClassifier,
  CoordConvRegressor,
  CoordConvRenderer,
  DeconvClassifier,
  DeconvRenderer,
)
from jaxnn.coordconv._objectives import (
  COORDINATE_MSE,
  PIXEL_SIGMOID,
  PIXEL_SOFTMAX,
  softmax_cross_entropy,
)
from jaxnn.coordconv._regions import task_data
from jaxnn.coordconv._tasks import TaskConfig, create_task_model, load_summary, run_task

__all__ = [
  "COORDINATE_MSE",
  "PIXEL_SIGMOID",
  "PIXEL_SOFTMAX",
  "TaskConfig",
  "create_task_model",
  "held_out_mask",
  "load_summary",
  "run_task",
  "softmax_cross_entropy",
  "task_data",
  "ConvRegressor",
  "CoordConv1D",
  "CoordConv2D",
  "CoordConv3D",
  "CoordConvClassifier",
  "CoordConvRegressor",
  "CoordConvRenderer",
  "CoordConvTranspose",
  "DeconvClassifier",
  "DeconvRenderer",
  "add_coords",
  "coordinate_channels",
  "coordinate_ramp",
  "num_coord_channels",
  "tile_coords",
]
