//! Feature modules: each registers its phase handlers, filters and content handlers at the
//! start of a cycle through one `init`.

pub mod access_log;
pub mod api;
pub mod limit_req;
pub mod metrics;
pub mod return_;
pub mod static_;
pub mod status;

use crate::http::runtime::Module;

/// Every module, in registration order (which is the order of handlers within a phase).
pub fn all() -> Vec<Box<dyn Module>> {
    vec![
        Box::new(limit_req::LimitReqModule),
        Box::new(return_::ReturnModule),
        Box::new(static_::StaticModule),
        Box::new(status::StatusModule),
        Box::new(metrics::MetricsModule),
        Box::new(api::ApiModule),
        Box::new(access_log::AccessLogModule),
    ]
}
