//! Compiles the protos into tonic services, prost messages and their proto3-JSON serde
//! impls, and derives the OpenAPI schemas of the HTTP face from the same descriptors, so
//! the protos are the one source of truth for both faces.

use std::collections::BTreeMap;
use std::path::PathBuf;

use prost::Message;
use prost_types::field_descriptor_proto::{Label, Type};
use prost_types::{DescriptorProto, FileDescriptorSet};
use serde_json::{Value, json};

const PROTOS: &[&str] = &[
    "proto/govbroker/v1/resources.proto",
    "proto/govbroker/v1/agencies.proto",
    "proto/govbroker/v1/quota_requests.proto",
    "proto/govbroker/v1/audit.proto",
    "proto/govbroker/v1/billing.proto",
    "proto/govbroker/v1/data_services.proto",
    "proto/govbroker/v1/workloads.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    let descriptor_path = out.join("govbroker_descriptor.bin");
    println!("cargo:rerun-if-changed=proto");

    // Type names (`prost::Name`) let one generic HTTP handler find a message's schema.
    let mut config = tonic_prost_build::Config::new();
    config.enable_type_names();
    tonic_prost_build::configure()
        .file_descriptor_set_path(&descriptor_path)
        .compile_well_known_types(true)
        .extern_path(".google.protobuf", "::pbjson_types")
        .compile_with_config(config, PROTOS, &["proto"])?;

    let descriptors = std::fs::read(&descriptor_path)?;
    pbjson_build::Builder::new()
        .register_descriptors(&descriptors)?
        .build(&[".govbroker"])?;

    let set = FileDescriptorSet::decode(descriptors.as_slice())?;
    std::fs::write(
        out.join("openapi_schemas.json"),
        serde_json::to_vec_pretty(&schemas(&set))?,
    )?;
    Ok(())
}

/// JSON Schemas (OpenAPI 3.0 flavour) of every govbroker message, as proto3 JSON
/// renders them: lowerCamelCase names, 64-bit integers as strings, FieldMask as a
/// comma-separated string. Field comments become descriptions.
fn schemas(set: &FileDescriptorSet) -> Value {
    let mut all = BTreeMap::new();
    for file in set.file.iter().filter(|f| f.package() == "govbroker.v1") {
        let comments = comments_by_path(file);
        for (index, message) in file.message_type.iter().enumerate() {
            let path = vec![4, index as i32];
            all.insert(
                message.name().to_owned(),
                message_schema(message, &path, &comments),
            );
        }
    }
    Value::Object(all.into_iter().collect())
}

fn comments_by_path(file: &prost_types::FileDescriptorProto) -> BTreeMap<Vec<i32>, String> {
    let mut map = BTreeMap::new();
    if let Some(info) = &file.source_code_info {
        for location in &info.location {
            if let Some(text) = &location.leading_comments {
                let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
                map.insert(location.path.clone(), text);
            }
        }
    }
    map
}

fn message_schema(
    message: &DescriptorProto,
    path: &[i32],
    comments: &BTreeMap<Vec<i32>, String>,
) -> Value {
    let mut properties = serde_json::Map::new();
    for (index, field) in message.field.iter().enumerate() {
        let mut schema = match field.r#type() {
            Type::String => json!({"type": "string"}),
            Type::Bool => json!({"type": "boolean"}),
            Type::Uint32 | Type::Fixed32 => json!({"type": "integer", "minimum": 0}),
            Type::Int32 | Type::Sint32 | Type::Sfixed32 => json!({"type": "integer"}),
            Type::Int64 | Type::Uint64 | Type::Sint64 | Type::Fixed64 | Type::Sfixed64 => {
                json!({"type": "string", "pattern": "^-?[0-9]+$"})
            }
            Type::Message if field.type_name() == ".google.protobuf.FieldMask" => {
                json!({"type": "string", "description": "Comma-separated lowerCamelCase field names."})
            }
            Type::Message => {
                let name = field.type_name().rsplit('.').next().unwrap_or_default();
                json!({"$ref": format!("#/components/schemas/{name}")})
            }
            other => panic!("field type {other:?} has no JSON mapping here; extend build.rs"),
        };
        if field.label() == Label::Repeated {
            schema = json!({"type": "array", "items": schema});
        }
        let mut field_path = path.to_vec();
        field_path.extend([2, index as i32]);
        if let Some(text) = comments.get(&field_path) {
            if schema.get("$ref").is_some() {
                schema = json!({"allOf": [schema], "description": text});
            } else {
                schema["description"] = json!(text);
            }
        }
        properties.insert(field.json_name().to_owned(), schema);
    }
    let mut schema = json!({"type": "object", "properties": properties});
    if let Some(text) = comments.get(path) {
        schema["description"] = json!(text);
    }
    schema
}
