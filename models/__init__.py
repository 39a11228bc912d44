"""actorml.models: what a parameter server trains.

Models declare named tables and compute row gradients for a mini-batch (``Model``,
``TableSpec``, ``localize``, ``gather``); shards apply per-row optimisers
(``make_optimizer``); ``load_dataset`` reads local datasets; ``train_local`` is the
single-process baseline. See ``docs/models.md``.
"""

from .base import Features as Features
from .base import Model as Model
from .base import TableSpec as TableSpec
from .base import feature_rows as feature_rows
from .base import gather as gather
from .base import init_tables as init_tables
from .base import localize as localize
from .base import select_columns as select_columns
from .base import take_rows as take_rows
from .data import load_dataset as load_dataset
from .dataset import Dataset as Dataset
from .dataset import partition as partition
from .logistic import LogisticRegression as LogisticRegression
from .mlp import MLP as MLP
from .optim import OPTIMIZERS as OPTIMIZERS
from .optim import SGD as SGD
from .optim import AdaGrad as AdaGrad
from .optim import Adam as Adam
from .optim import Optimizer as Optimizer
from .optim import RMSProp as RMSProp
from .optim import init_state as init_state
from .optim import make_optimizer as make_optimizer
from .registry import MODELS as MODELS
from .registry import make_model as make_model
from .softmax import SoftmaxRegression as SoftmaxRegression
from .svm import LinearSVM as LinearSVM
from .train import EpochStats as EpochStats
from .train import train_local as train_local

__all__ = [
    "MLP",
    "MODELS",
    "OPTIMIZERS",
    "SGD",
    "AdaGrad",
    "Adam",
    "Dataset",
    "EpochStats",
    "Features",
    "LinearSVM",
    "LogisticRegression",
    "Model",
    "Optimizer",
    "RMSProp",
    "SoftmaxRegression",
    "TableSpec",
    "feature_rows",
    "gather",
    "init_state",
    "init_tables",
    "load_dataset",
    "localize",
    "make_model",
    "make_optimizer",
    "partition",
    "select_columns",
    "take_rows",
    "train_local",
]
