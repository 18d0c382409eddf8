//! `docs/openapi.yaml`, the router and the route table (`modules::api::routes`) agree: the
//! document names exactly the routes of the table; the router answers each of them (never 404
//! nor 405), answers 405 to the other methods on their paths and 404 to paths next to them; the
//! public reads are anonymous and cached in the document, every other call needs a token; every
//! request body refuses unknown fields; every error answer has the error shape. What the live
//! server answers is schemathesis's to check (`scripts/schemathesis`).

use std::collections::BTreeSet;

use bizzy::modules::api::route::route;
use bizzy::modules::api::routes::{PUBLIC, ROUTES, STREAMS};
use yaml_rust2::{Yaml, YamlLoader};

/// The methods tried on every path.
const METHODS: &[&str] = &["GET", "POST", "PUT", "PATCH", "DELETE"];
/// The keys of an OpenAPI path item that are operations.
const OPERATIONS: &[&str] = &[
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

fn document() -> Yaml {
    let text = include_str!("../docs/openapi.yaml");
    let mut docs = YamlLoader::load_from_str(text).expect("docs/openapi.yaml is YAML");
    assert_eq!(docs.len(), 1, "docs/openapi.yaml holds one document");
    docs.remove(0)
}

fn hash(y: &Yaml) -> &yaml_rust2::yaml::Hash {
    y.as_hash()
        .unwrap_or_else(|| panic!("a mapping, not {y:?}"))
}

/// `y`, or what its `$ref` (a pointer into the document) names.
fn resolve<'a>(doc: &'a Yaml, y: &'a Yaml) -> &'a Yaml {
    let Some(target) = y["$ref"].as_str() else {
        return y;
    };
    let path = target
        .strip_prefix("#/")
        .unwrap_or_else(|| panic!("a $ref inside the document: {target}"));
    let found = path.split('/').fold(doc, |at, key| &at[key]);
    assert!(!found.is_badvalue(), "{target} names nothing");
    resolve(doc, found)
}

/// Every (METHOD, path template, operation) of the document.
fn operations(doc: &Yaml) -> Vec<(String, String, &Yaml)> {
    let mut ops = Vec::new();
    for (path, item) in hash(&doc["paths"]) {
        let path = path.as_str().expect("a path is a string");
        for (key, op) in hash(item) {
            let key = key.as_str().expect("a path item's keys are strings");
            if OPERATIONS.contains(&key) {
                ops.push((key.to_ascii_uppercase(), path.to_string(), op));
            }
        }
    }
    ops
}

/// The template with its parameters filled in.
fn concrete(template: &str) -> String {
    template
        .replace("{id}", "1")
        .replace("{device_id}", "dev-1")
        .replace("{uid}", "u1")
}

/// What the router answers an anonymous `method` on `path` without a body: Ok, or the
/// error's status and code.
fn routed(method: &str, path: &str) -> Result<(), (u16, &'static str)> {
    route(method, path, None, b"", None)
        .map(|_| ())
        .map_err(|e| (e.status, e.code))
}

fn templates() -> BTreeSet<&'static str> {
    ROUTES.iter().map(|&(_, t)| t).collect()
}

#[test]
fn the_route_table_has_no_route_twice() {
    let set: BTreeSet<_> = ROUTES.iter().collect();
    assert_eq!(set.len(), ROUTES.len(), "a route listed twice");
    for p in PUBLIC {
        assert!(ROUTES.contains(p), "public {p:?} is not in ROUTES");
        assert_eq!(p.0, "GET", "a public route is a read: {p:?}");
    }
}

#[test]
fn the_document_names_every_route_and_no_other() {
    let doc = document();
    let documented: BTreeSet<(String, String)> = operations(&doc)
        .into_iter()
        .map(|(m, p, _)| (m, p))
        .collect();
    let table: BTreeSet<(String, String)> = ROUTES
        .iter()
        .map(|&(m, p)| (m.to_string(), p.to_string()))
        .collect();
    let undocumented: Vec<_> = table.difference(&documented).collect();
    let unrouted: Vec<_> = documented.difference(&table).collect();
    assert!(
        undocumented.is_empty() && unrouted.is_empty(),
        "in ROUTES, not in docs/openapi.yaml: {undocumented:?}; \
         in docs/openapi.yaml, not in ROUTES: {unrouted:?}"
    );
}

#[test]
fn the_router_answers_every_route() {
    let wrong: Vec<String> = ROUTES
        .iter()
        .filter_map(|&(m, t)| {
            let path = concrete(t);
            match routed(m, &path) {
                Err((status @ (404 | 405), code)) => Some(format!("{m} {path}: {status} {code}")),
                _ => None,
            }
        })
        .collect();
    assert!(
        wrong.is_empty(),
        "routes the router does not know: {wrong:?}"
    );
}

#[test]
fn other_methods_on_a_route_path_are_405() {
    let mut wrong = Vec::new();
    for t in templates() {
        let path = concrete(t);
        for m in METHODS {
            if ROUTES.contains(&(*m, t)) {
                continue;
            }
            match routed(m, &path) {
                Err((405, _)) => {}
                other => wrong.push(format!("{m} {path}: {other:?}")),
            }
        }
    }
    assert!(wrong.is_empty(), "not 405: {wrong:?}");
}

#[test]
fn paths_next_to_routes_are_404() {
    let near = [
        "/v1/",
        "/v1/hive",
        "/v1/HIVES",
        "/v1/hives/",
        "/v1/hives/0",
        "/v1/hives/-1",
        "/v1/hives/+1",
        "/v1/hives/x",
        "/v1/hives/1/",
        "/v1/hives/1/occupancy/x",
        "/v1/hives/1/occupancies",
        "/v1/hive-type",
        "/v1/hive-types/1",
        "/v1/hive_types",
        "/v1/account",
        "/v1/accounts/",
        "/v1/accounts/0",
        "/v1/accounts/1/admins",
        "/v1/accounts/1/admins/u1/x",
        "/v1/accounts/1/hives/1",
        "/v1/accounts/1/sensor",
        "/v1/accounts/1/tokens/1",
        "/v1/sensors",
        "/v1/sensors/",
        "/v1/sensors/a b",
        "/v1/sensors/dev-1/configs",
        "/v1/sensors/dev-1/config/x",
        "/v1/tokens",
        "/v1/tokens/1/x",
        "/v1/tokens/dev-1",
        "/v2/hives",
        "/hives",
    ];
    let wrong: Vec<String> = near
        .iter()
        .filter_map(|path| match routed("GET", path) {
            Err((404, "not_found")) => None,
            other => Some(format!("GET {path}: {other:?}")),
        })
        .collect();
    assert!(wrong.is_empty(), "not 404: {wrong:?}");
}

#[test]
fn public_reads_are_anonymous_and_cached_the_rest_need_a_token() {
    let doc = document();
    for (m, p, op) in operations(&doc) {
        let public = PUBLIC.iter().any(|&(pm, pp)| pm == m && pp == p);
        let stream = STREAMS.iter().any(|&(pm, pp)| pm == m && pp == p);
        let security = &op["security"];
        if stream {
            assert!(security.is_badvalue(), "{m} {p} is anonymous: no security");
            let ok = resolve(&doc, &op["responses"]["200"]);
            assert!(
                !ok["content"]["text/event-stream"].is_badvalue(),
                "{m} {p}: 200 is an event stream"
            );
            assert_eq!(
                ok["headers"]["Cache-Control"]["schema"]["enum"][0].as_str(),
                Some("no-cache"),
                "{m} {p}: never cached"
            );
        } else if public {
            assert!(security.is_badvalue(), "{m} {p} is anonymous: no security");
            let ok = resolve(&doc, &op["responses"]["200"]);
            for header in ["ETag", "Cache-Control"] {
                assert!(
                    !ok["headers"][header].is_badvalue(),
                    "{m} {p}: 200 has no {header}"
                );
            }
            assert!(
                !op["responses"]["304"].is_badvalue(),
                "{m} {p} answers 304 to If-None-Match"
            );
        } else {
            let schemes = security.as_vec().map(|v| v.as_slice()).unwrap_or(&[]);
            assert!(
                schemes.iter().any(|s| !s["bearerAuth"].is_badvalue()),
                "{m} {p} needs bearerAuth"
            );
            assert!(!op["responses"]["401"].is_badvalue(), "{m} {p} answers 401");
        }
    }
    assert_eq!(
        doc["components"]["securitySchemes"]["bearerAuth"]["bearerFormat"].as_str(),
        Some("JWT")
    );
}

/// Every object in `schema` (nested ones too) refuses properties it does not name.
fn closed(doc: &Yaml, schema: &Yaml, at: &str, wrong: &mut Vec<String>) {
    let schema = resolve(doc, schema);
    if schema["type"].as_str() == Some("object") || !schema["properties"].is_badvalue() {
        if schema["additionalProperties"].as_bool() != Some(false) {
            wrong.push(at.to_string());
        }
        if let Some(props) = schema["properties"].as_hash() {
            for (k, v) in props {
                let k = k.as_str().unwrap_or("?");
                closed(doc, v, &format!("{at}.{k}"), wrong);
            }
        }
    }
    if let Some(items) = schema["items"].as_hash() {
        closed(doc, &Yaml::Hash(items.clone()), &format!("{at}[]"), wrong);
    }
}

#[test]
fn request_bodies_refuse_unknown_fields() {
    let doc = document();
    let mut wrong = Vec::new();
    for (m, p, op) in operations(&doc) {
        let body = &op["requestBody"];
        if body.is_badvalue() {
            continue;
        }
        let body = resolve(&doc, body);
        let schema = &body["content"]["application/json"]["schema"];
        assert!(!schema.is_badvalue(), "{m} {p}: a JSON body");
        closed(&doc, schema, &format!("{m} {p}"), &mut wrong);
    }
    assert!(wrong.is_empty(), "open to unknown fields: {wrong:?}");
}

#[test]
fn errors_have_the_error_shape() {
    let doc = document();
    let error = &doc["components"]["schemas"]["Error"];
    for (m, p, op) in operations(&doc) {
        let mut statuses = Vec::new();
        for (status, response) in hash(&op["responses"]) {
            let status = match status {
                Yaml::String(s) => s.clone(),
                Yaml::Integer(n) => n.to_string(),
                other => panic!("{m} {p}: a status {other:?}"),
            };
            let response = resolve(&doc, response);
            if status.starts_with('4') && status != "429" || status.starts_with('5') {
                let schema = &response["content"]["application/json"]["schema"];
                assert!(
                    resolve(&doc, schema) == error,
                    "{m} {p}: {status} is no error object"
                );
            }
            if status == "503" {
                assert!(
                    !response["headers"]["Retry-After"].is_badvalue(),
                    "{m} {p}: 503 says when to retry"
                );
            }
            statuses.push(status);
        }
        for needed in ["404", "503"] {
            assert!(
                statuses.iter().any(|s| s == needed),
                "{m} {p} answers {needed}"
            );
        }
        if !op["requestBody"].is_badvalue() {
            for needed in ["400", "413"] {
                assert!(
                    statuses.iter().any(|s| s == needed),
                    "{m} {p} answers {needed}"
                );
            }
        }
    }
}
