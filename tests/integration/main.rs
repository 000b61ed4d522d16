//! The integration tests: one binary, one module per area, driving the real `supportopsd`.

mod generated;
mod plan;
mod secret;
mod support;
mod testcmd;
mod validate;
