"""Diagnostics: the speed benchmarks and the probes behind ``python -m harness.bench <name>`` (``harness.bench``).

Nothing in a sweep imports this package; each module is one command, with an ``add_parser(sub)`` for its options and
a ``bench_*(args)`` that runs it and returns the JSON result (written to ``results/bench/`` by ``harness.bench``).

Speed (what a step, a sweep or a decode costs):

- ``speed_connectors`` (``connectors``): training step time, parameters and FLOPs per image of every connector;
- ``speed_train`` (``train``): samples/s, tokens/s, memory and MFU of a configuration per speed switch;
- ``speed_cache`` (``cache``): a connector sweep with and without the frozen-feature cache;
- ``speed_eval`` (``eval``): batched KV-cache generation vs. transformers ``generate``, one prompt at a time;
- ``speed_decode`` (``decode``): images per second per core decoded from webdataset shards;
- ``speed_loggers`` (``loggers``): step time and the time spent inside the experiment trackers.

Probes (what the tiny VLM learns, docs/embedded_default.md), three rungs:

- ``probe_encoder`` (``probe``): what the frozen encoder's tokens carry, per attribute;
- ``probe_connector`` (``probe-connector``): what the connector computes from them when trained on it, no LM;
- ``probe_vlm`` (``probe-vlm``): the VLM trained on one question type.

The commands that train a VLM (``connectors``, ``train``, ``probe-vlm``) take their steps through the sweep's own
:func:`harness.train.loop.train_step`; each module's docstring says what it does around it.
"""
