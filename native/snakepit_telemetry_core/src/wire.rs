//! Types and client/server stubs generated from `priv/proto/snakepit_bridge.proto`.
#![allow(clippy::all, missing_docs)]

tonic::include_proto!("snakepit.bridge");
