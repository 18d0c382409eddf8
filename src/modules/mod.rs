//! Feature modules: each registers its phase handlers, filters and content handlers at the
//! start of a cycle through one `init`, and names its content handlers for the configuration.
//! `auth`, `cache`, `database` and `ingest` hold the configuration sections of the product
//! modules to come.

pub mod access_log;
pub mod api;
pub mod auth;
pub mod cache;
pub mod database;
pub mod ingest;
pub mod limit_req;
pub mod live;
pub mod metrics;
pub mod occupancy;
pub mod return_;
pub mod static_;
pub mod status;

use crate::http::module::Module;

/// Every module, in registration order (which is the order of handlers within a phase, and of
/// the handler names an unknown `handler` error lists).
pub fn all() -> Vec<Box<dyn Module>> {
    vec![
        Box::new(limit_req::LimitReqModule),
        Box::new(return_::ReturnModule),
        Box::new(api::ApiModule),
        Box::new(status::StatusModule),
        Box::new(metrics::MetricsModule),
        Box::new(static_::StaticModule),
        Box::new(access_log::AccessLogModule),
    ]
}
