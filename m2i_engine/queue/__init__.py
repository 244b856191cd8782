"""Scale-out mode: front ends enqueue jobs on Redis (Dramatiq) and GPU worker processes run them.

:mod:`.client` has :class:`~m2i_engine.queue.client.QueueEngine` (the engine interface, backed by the
queue), :mod:`.worker` the ``m2i worker`` process, :mod:`.codec` the wire format of results, and
:mod:`.guard` the protections every engine gets (decoder isolation, out-of-memory fallback). Importing
the package is cheap: Redis and Dramatiq load with the modules that need them.
"""
