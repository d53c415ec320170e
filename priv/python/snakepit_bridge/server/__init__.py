"""The worker's gRPC server, one job per module.

* :mod:`.codec` -- ``ExecuteTool`` parameters and results (JSON inside ``Any``);
* :mod:`.service` -- ``BridgeService`` (Ping, ExecuteTool, both telemetry RPCs);
* :mod:`.auth` -- the per-worker token: reading it, and the interceptor that
  refuses every call without it;
* :mod:`.lifecycle` -- when the worker stops (signals, stdin, parent);
* :mod:`.app` -- the command line, server wiring and the ready line.

``priv/python/grpc_server.py`` is the script that runs :func:`.app.main`.
"""
