//! The integration tests: one binary, one module per area, driving the real `supportopsd`.

mod generated;
mod support;
mod validate;
