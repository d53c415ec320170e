"""Generated protobuf / gRPC stubs of ``priv/proto/snakepit_bridge.proto``.

* :mod:`snakepit_bridge.proto.snakepit_bridge_pb2` -- the messages;
* :mod:`snakepit_bridge.proto.snakepit_bridge_pb2_grpc` -- ``BridgeServiceStub``,
  ``BridgeServiceServicer``, ``add_BridgeServiceServicer_to_server``.

Never edit them: run ``python priv/python/scripts/gen_proto.py`` after changing
the ``.proto`` (``tests/test_proto_stubs.py`` fails while they are stale). The
pinned ``grpcio-tools`` that writes them (``requirements-proto.txt``) puts no
version check in them: they load with every ``grpcio``/``protobuf`` that
``requirements.txt`` allows.
"""
