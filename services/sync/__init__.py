"""The sync: Ringfence and a Kubernetes cluster kept in step (``ringfence sync``).

:mod:`~services.sync.watcher` lists and watches the cluster, :mod:`~services.sync.plan` compares it
with Ringfence's store and the last common state, :mod:`~services.sync.importer` and
:mod:`~services.sync.writer` carry the plan out, :mod:`~services.sync.conflicts` records what changed
on both sides, and :mod:`~services.sync.runner` ties them into passes.
"""
