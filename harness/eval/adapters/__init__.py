"""Optional adapters that run other evaluation kits' benchmarks on a finished harness run.

``vlmevalkit``: a VLMEvalKit model (``vlmeval.vlm.base.BaseModel``); ``lmms_eval``: an lmms-eval model
(``lmms_eval.api.model.lmms``). Both load a run folder with :func:`harness.models.load.load_vlm` (the run must have
been trained with ``runtime.save_weights=true``) and answer through :mod:`harness.eval.adapters.core`. The kits are
optional extras (``pip install -e '.[vlmevalkit]'`` / ``'.[lmms-eval]'``, each in its own environment: they pull
1.5-6 GB and conflict with hydra's omegaconf) and are imported only when an adapter's model class is created, so
this package imports without them.
"""
