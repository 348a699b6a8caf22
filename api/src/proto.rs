//! The generated protobuf messages, gRPC services and their proto3-JSON serde impls.
#![allow(missing_docs, clippy::all)]

include!(concat!(env!("OUT_DIR"), "/govbroker.v1.rs"));
include!(concat!(env!("OUT_DIR"), "/govbroker.v1.serde.rs"));

/// The encoded descriptor set, for gRPC reflection and tooling.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/govbroker_descriptor.bin"));

/// JSON Schemas of every message, as the HTTP face renders them (built from the protos).
pub const OPENAPI_SCHEMAS: &str = include_str!(concat!(env!("OUT_DIR"), "/openapi_schemas.json"));
