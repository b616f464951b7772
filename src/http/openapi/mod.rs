//! The OpenAPI 3.1 document of both APIs, generated: each operation from
//! its handler's `#[utoipa::path]`, each answer's schema from the type the
//! handler returns (`ToSchema`), who may call a route from the rule the
//! guard enforces, and the message schemas from the files in `schemas/`
//! (referenced, not derived, so the document and `homeward validate`
//! judge a message alike).

pub mod example;

use std::borrow::Cow;

use axum::http::Method;
use serde_json::{Value, json};
use utoipa::openapi::path::{Operation, ParameterBuilder, ParameterIn, PathItem};
use utoipa::openapi::schema::{Object, ObjectBuilder, Schema};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{
    Content, Ref, RefOr, Required, ResponseBuilder, Server, header::HeaderBuilder, schema::Type,
};
use utoipa::{Modify, OpenApi, PartialSchema, ToSchema};

use crate::domain::access::Role;
use crate::domain::message::{ENVELOPE_SCHEMA, PAYLOAD_SCHEMAS};
use crate::domain::officer;
use crate::protocol::ErrorEnvelope;

/// The request body of a submission: `envelope.v1.json` as a submission
/// may leave it, each payload by the schema of its type and version. Its
/// schema is put in after generation (see [`Document::finish`]).
pub struct SubmittedEnvelope;

impl PartialSchema for SubmittedEnvelope {
    fn schema() -> RefOr<Schema> {
        Object::new().into()
    }
}

impl ToSchema for SubmittedEnvelope {
    fn name() -> Cow<'static, str> {
        "SubmittedEnvelope".into()
    }
}

/// An envelope as gateways exchange it: `envelope.v1.json` whole, each
/// payload by the schema of its type and version. Put in after generation.
pub struct Envelope;

impl PartialSchema for Envelope {
    fn schema() -> RefOr<Schema> {
        Object::new().into()
    }
}

impl ToSchema for Envelope {
    fn name() -> Cow<'static, str> {
        "Envelope".into()
    }
}

const LOCAL_SERVER: &str = "https://127.0.0.1:7201";
const PEER_SERVER: &str = "https://127.0.0.1:7101";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Homeward gateway API",
        version = "1.0.0",
        description = "Local API (this country's systems: TLS, a bearer token or a client certificate, \
            roles) and peer API (gateway to gateway: mutual TLS 1.3, node identity \
            urn:homeward:node:<CC>). Every refusal uses the Error body. Message payloads: GET /v1/schemas.",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    servers((url = "https://127.0.0.1:7201", description = "KH development local API (TLS 1.3)")),
    components(schemas(SubmittedEnvelope, Envelope, ErrorEnvelope)),
    modifiers(&SecuritySchemes),
)]
struct Base;

struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        let mut bearer = Http::new(HttpAuthScheme::Bearer);
        bearer.description = Some("A token from [[tokens]] (stored as SHA-256)".into());
        components.add_security_scheme("bearer", SecurityScheme::Http(bearer));
        components.add_security_scheme(
            "clientCert",
            SecurityScheme::MutualTls {
                description: Some(
                    "A client certificate from local_api.client_ca, mapped by subject in [[client_certs]]"
                        .into(),
                ),
                deprecated: None,
                extensions: None,
            },
        );
        components.add_security_scheme(
            "peerCert",
            SecurityScheme::MutualTls {
                description: Some(
                    "A peer node's certificate with SAN URI urn:homeward:node:<CC>, from that country's CA"
                        .into(),
                ),
                deprecated: None,
                extensions: None,
            },
        );
    }
}

/// The document being put together.
pub struct Document {
    doc: utoipa::openapi::OpenApi,
    /// Schemas written as JSON Schema by hand, put in at the end: where a
    /// derived one cannot say it (exactly one of several forms).
    raw: Vec<(String, Value)>,
}

impl Default for Document {
    fn default() -> Self {
        Self::new()
    }
}

impl Document {
    pub fn new() -> Self {
        Self {
            doc: Base::openapi(),
            raw: Vec::new(),
        }
    }

    /// Sets the component schema `name` to `schema` when the document is
    /// finished (over a placeholder `T` the operations refer to).
    pub fn raw_schema(&mut self, name: &str, schema: Value) -> &mut Self {
        self.raw.push((name.to_string(), schema));
        self
    }

    /// Adds the schema of `T` and of every type it contains, so the
    /// operations' `$ref`s resolve.
    pub fn schema<T: ToSchema>(&mut self) -> &mut Self {
        let mut schemas = vec![(T::name().into_owned(), T::schema())];
        T::schemas(&mut schemas);
        let components = self.doc.components.get_or_insert_with(Default::default);
        components.schemas.extend(schemas);
        self
    }

    /// A local API route: `roles` empty means public; otherwise the guard's
    /// answers (401, 403, 429) are documented from the rule it enforces.
    /// Every local route takes the `On-Behalf-Of` header (the guard checks
    /// it on each one).
    pub fn local(&mut self, method: &Method, path: &str, roles: &[Role], mut op: Operation) {
        on_behalf_of(&mut op);
        if roles.is_empty() {
            op.security = Some(vec![SecurityRequirement::default()]);
        } else {
            op.security = Some(vec![
                SecurityRequirement::new::<_, _, &str>("bearer", []),
                SecurityRequirement::new::<_, _, &str>("clientCert", []),
            ]);
            let names: Vec<&str> = roles.iter().map(|r| r.as_str()).collect();
            let who = format!("Roles: {}.", names.join(", "));
            op.description = Some(match op.description.take() {
                Some(d) => format!("{d}\n\n{who}"),
                None => who,
            });
            error(
                &mut op,
                401,
                "No valid bearer token or client certificate (unauthenticated)",
            );
            error(
                &mut op,
                403,
                "The caller's role may not call this route (forbidden)",
            );
            rate_limited(&mut op);
        }
        self.add(method, path, op, None);
    }

    /// A peer API route, served on the peer port to node certificates.
    pub fn peer(&mut self, method: &Method, path: &str, mut op: Operation) {
        op.security = Some(vec![SecurityRequirement::new::<_, _, &str>("peerCert", [])]);
        rate_limited(&mut op);
        let server = Server::builder()
            .url(PEER_SERVER)
            .description(Some(
                "KH development peer API (mutual TLS 1.3, a node certificate)",
            ))
            .build();
        self.add(method, path, op, Some(server));
    }

    fn add(&mut self, method: &Method, path: &str, op: Operation, server: Option<Server>) {
        let method = match *method {
            Method::POST => utoipa::openapi::HttpMethod::Post,
            _ => utoipa::openapi::HttpMethod::Get,
        };
        let paths = &mut self.doc.paths.paths;
        let item = paths
            .entry(path.to_string())
            .or_insert_with(|| PathItem::new(method.clone(), Operation::new()));
        match method {
            utoipa::openapi::HttpMethod::Post => item.post = Some(op),
            _ => item.get = Some(op),
        }
        if let Some(server) = server {
            item.servers = Some(vec![server]);
        }
    }

    /// The document as served, with the message schemas put in.
    pub fn finish(self) -> String {
        let mut doc = serde_json::to_value(&self.doc).expect("the document serializes");
        let schemas = &mut doc["components"]["schemas"];
        schemas["Envelope"] = envelope(false);
        schemas["SubmittedEnvelope"] = envelope(true);
        for (name, schema) in self.raw {
            schemas[name] = schema;
        }
        for (message_type, version, source) in PAYLOAD_SCHEMAS {
            let name = payload_name(message_type, *version);
            let mut schema: Value = serde_json::from_str(source).expect("a payload schema is JSON");
            let defs = take_published_keys(&mut schema);
            for (def, mut s) in defs {
                rewrite_refs(&mut s, &name);
                schemas[format!("{name}.{def}")] = s;
            }
            rewrite_refs(&mut schema, &name);
            schemas[name] = schema;
        }
        // Keep the servers entry for the local port only where the path
        // has none of its own.
        debug_assert!(doc["servers"][0]["url"] == LOCAL_SERVER);
        serde_json::to_string(&doc).expect("a JSON value serializes")
    }
}

/// Documents `status` with the standard error body unless the handler's
/// annotation already says what it means on this route.
pub fn error(op: &mut Operation, status: u16, description: &str) {
    let key = status.to_string();
    if op.responses.responses.contains_key(&key) {
        return;
    }
    let response = ResponseBuilder::new()
        .description(description)
        .content("application/json", error_content())
        .build();
    op.responses.responses.insert(key, response.into());
}

/// The `On-Behalf-Of` parameter and its refusal (400 `bad_officer`), added
/// to the route's own 400 where it has one.
fn on_behalf_of(op: &mut Operation) {
    let schema = ObjectBuilder::new()
        .schema_type(Type::String)
        .min_length(Some(1))
        .max_length(Some(officer::MAX_LEN))
        .pattern(Some(officer::PATTERN))
        .build();
    let parameter = ParameterBuilder::new()
        .name("On-Behalf-Of")
        .parameter_in(ParameterIn::Header)
        .required(Required::False)
        .description(Some(format!(
            "The officer the caller acts for: an opaque id from the case system ({}), \
             stored as sent in the audit record of the call",
            officer::RULE
        )))
        .schema(Some(schema))
        .build();
    op.parameters
        .get_or_insert_with(Vec::new)
        .push(RefOr::T(parameter));
    match op.responses.responses.get_mut("400") {
        Some(RefOr::T(r)) => {
            r.description = format!(
                "{}; or a malformed On-Behalf-Of header (bad_officer)",
                r.description
            );
        }
        _ => error(op, 400, "A malformed On-Behalf-Of header (bad_officer)"),
    }
}

fn rate_limited(op: &mut Operation) {
    let response = ResponseBuilder::new()
        .description("Over the caller's rate (rate_limited); Retry-After says when to come back")
        .header(
            "Retry-After",
            HeaderBuilder::new()
                .schema(Some(Object::with_type(Type::Integer)))
                .description(Some("Seconds to wait"))
                .build(),
        )
        .content("application/json", error_content())
        .build();
    op.responses
        .responses
        .insert("429".to_string(), response.into());
}

fn error_content() -> Content {
    Content::new(Some(Ref::from_schema_name("Error")))
}

fn payload_name(message_type: &str, version: u32) -> String {
    format!("payload.{message_type}.v{version}")
}

/// Removes `$schema`, `$id` and `$defs` (which mean nothing inside another
/// document) and returns the definitions.
fn take_published_keys(schema: &mut Value) -> Vec<(String, Value)> {
    let Some(o) = schema.as_object_mut() else {
        return Vec::new();
    };
    o.remove("$schema");
    o.remove("$id");
    match o.remove("$defs") {
        Some(Value::Object(defs)) => defs.into_iter().collect(),
        _ => Vec::new(),
    }
}

/// Points a published schema's `#/$defs/x` at its component `<name>.x`.
fn rewrite_refs(v: &mut Value, name: &str) {
    match v {
        Value::Object(o) => {
            if let Some(Value::String(r)) = o.get_mut("$ref")
                && let Some(def) = r.strip_prefix("#/$defs/")
            {
                *r = format!("#/components/schemas/{name}.{def}");
            }
            o.values_mut().for_each(|c| rewrite_refs(c, name));
        }
        Value::Array(items) => items.iter_mut().for_each(|i| rewrite_refs(i, name)),
        _ => {}
    }
}

/// `envelope.v1.json` with the payload by the schema of the message's type
/// and version; as a submission may write it (`submitted`), the fields the
/// gateway fills in may be left out.
fn envelope(submitted: bool) -> Value {
    let mut schema: Value =
        serde_json::from_str(ENVELOPE_SCHEMA).expect("the envelope schema is JSON");
    let defs = take_published_keys(&mut schema);
    for (def, s) in defs {
        // The envelope's few definitions are inlined: the Envelope
        // component then reads on its own.
        inline_def(&mut schema, &def, &s);
    }
    schema["description"] = if submitted {
        let filled = ["message_id", "created_at", "from", "in_reply_to"];
        if let Some(required) = schema["required"].as_array_mut() {
            required.retain(|r| !r.as_str().is_some_and(|r| filled.contains(&r)));
        }
        // The gateway sets it from who called; a submitter may not.
        if let Some(props) = schema["properties"].as_object_mut() {
            props.remove("sent_by");
        }
        json!(
            "The envelope (GET /v1/schemas/envelope/1) as submitted: message_id, created_at, \
             from and in_reply_to may be left out and are filled in by the gateway. The \
             payload is the schema of its type and schema_version (GET /v1/schemas)."
        )
    } else {
        json!(
            "The envelope (GET /v1/schemas/envelope/1) as gateways exchange it. The payload \
             is the schema of its type and schema_version (GET /v1/schemas)."
        )
    };
    schema["oneOf"] = PAYLOAD_SCHEMAS
        .iter()
        .map(|(message_type, version, _)| {
            json!({
                "required": ["type", "schema_version"],
                "properties": {
                    "type": {"const": message_type},
                    "schema_version": {"const": version},
                    "payload": {"$ref": format!("#/components/schemas/{}", payload_name(message_type, *version))},
                },
            })
        })
        .collect();
    schema
}

fn inline_def(v: &mut Value, def: &str, with: &Value) {
    match v {
        Value::Object(o) => {
            if o.get("$ref").and_then(Value::as_str) == Some(&format!("#/$defs/{def}")) {
                o.remove("$ref");
                if let Value::Object(d) = with {
                    for (k, val) in d {
                        o.entry(k.clone()).or_insert_with(|| val.clone());
                    }
                }
            }
            o.values_mut().for_each(|c| inline_def(c, def, with));
        }
        Value::Array(items) => items.iter_mut().for_each(|i| inline_def(i, def, with)),
        _ => {}
    }
}
