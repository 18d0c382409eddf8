//! Every route of the API under `/v1/`, as (method, path template): the one list that the
//! router ([`super::route::route`]) and the document (`docs/openapi.yaml`) must both agree
//! with. `tests/openapi.rs` holds them to it: the document names exactly these operations, the
//! router answers each of them (never 404 nor 405), answers 405 to the other methods on each of
//! these paths, and 404 to paths next to them. A route added to one and not to the others fails
//! that test.
//!
//! Templates name their parameters as the document does: `{id}` (a positive integer),
//! `{device_id}` (a sensor's device id), `{uid}` (a Firebase uid).

/// The anonymous reads: rate-limited, cached, answered with `ETag` and `Cache-Control` (and
/// from the replica while PostgreSQL is down). Each is in [`ROUTES`] too.
pub const PUBLIC: &[(&str, &str)] = &[
    ("GET", "/v1/hives"),
    ("GET", "/v1/hives/{id}"),
    ("GET", "/v1/hives/{id}/occupancy"),
    ("GET", "/v1/hive-types"),
];

/// The anonymous event streams: never cached (`Cache-Control: no-cache`), answered as
/// `text/event-stream`. Each is in [`ROUTES`] too.
pub const STREAMS: &[(&str, &str)] = &[("GET", "/v1/hives/{id}/live")];

/// Every route: the public reads first, then the business calls (a signed-in caller).
pub const ROUTES: &[(&str, &str)] = &[
    ("GET", "/v1/hives"),
    ("GET", "/v1/hives/{id}"),
    ("GET", "/v1/hives/{id}/occupancy"),
    ("GET", "/v1/hive-types"),
    // The hive's changes as server-sent events (anonymous; `crate::modules::live`).
    ("GET", "/v1/hives/{id}/live"),
    ("GET", "/v1/accounts"),
    ("POST", "/v1/accounts"),
    ("GET", "/v1/accounts/{id}"),
    ("PUT", "/v1/accounts/{id}/admins/{uid}"),
    ("DELETE", "/v1/accounts/{id}/admins/{uid}"),
    ("GET", "/v1/accounts/{id}/hives"),
    ("POST", "/v1/accounts/{id}/hives"),
    ("GET", "/v1/accounts/{id}/sensors"),
    ("POST", "/v1/accounts/{id}/sensors"),
    ("GET", "/v1/accounts/{id}/tokens"),
    ("POST", "/v1/accounts/{id}/tokens"),
    ("PATCH", "/v1/hives/{id}"),
    ("DELETE", "/v1/hives/{id}"),
    ("GET", "/v1/sensors/{device_id}"),
    ("PATCH", "/v1/sensors/{device_id}"),
    ("DELETE", "/v1/sensors/{device_id}"),
    ("PUT", "/v1/sensors/{device_id}/config"),
    ("DELETE", "/v1/tokens/{id}"),
    // Premium reads (a subscription with the feature).
    ("GET", "/v1/hives/{id}/history"),
    ("GET", "/v1/hives/{id}/peak-hours"),
    // The signed-in caller's own resources (`super::me`).
    ("GET", "/v1/me"),
    ("PATCH", "/v1/me"),
    ("GET", "/v1/me/favorites"),
    ("PUT", "/v1/me/favorites/{id}"),
    ("DELETE", "/v1/me/favorites/{id}"),
    ("GET", "/v1/me/recent"),
    ("POST", "/v1/me/recent/{id}"),
    ("GET", "/v1/me/notifications"),
    ("POST", "/v1/me/notifications"),
    ("PATCH", "/v1/me/notifications/{id}"),
    ("DELETE", "/v1/me/notifications/{id}"),
    ("GET", "/v1/me/inbox"),
    ("POST", "/v1/me/inbox/{id}/read"),
];
