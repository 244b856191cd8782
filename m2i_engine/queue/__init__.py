"""Scale-out mode: front ends enqueue jobs on Redis (Dramatiq) and GPU worker processes run them.

:mod:`.client` has :class:`~m2i_engine.queue.client.QueueEngine` (the engine interface, backed by the
queue), :mod:`.worker` the ``m2i worker`` process, :mod:`.codec` the wire format of results, and
the protections every serving engine gets (decoder isolation, shared tags, out-of-memory fallback) are
the engine layer's own, in :mod:`m2i_engine.serving`. Importing the package is cheap: Redis and
Dramatiq load with the modules that need them.
"""
