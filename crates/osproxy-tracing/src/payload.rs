//! The OTLP/JSON payload handed to a [`osproxy_observe::SpanExporter`]: the
//! same span data the OTLP/HTTP path sends, encoded with
//! `opentelemetry-proto`'s own types and their OTLP/JSON serde mapping.

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::transform::common::tonic::ResourceAttributesWithSchema;
use opentelemetry_proto::transform::trace::tonic::group_spans_by_resource_and_scope;
use opentelemetry_sdk::trace::SpanData;
use opentelemetry_sdk::Resource;
use serde_json::Value;

/// An `ExportTraceServiceRequest` holding `spans`, as OTLP/JSON.
pub(crate) fn otlp_json(spans: Vec<SpanData>, resource: &Resource) -> Value {
    let resource = ResourceAttributesWithSchema::from(resource);
    let request = ExportTraceServiceRequest {
        resource_spans: group_spans_by_resource_and_scope(spans, &resource),
    };
    serde_json::to_value(&request).unwrap_or(Value::Null)
}
