//! Telemetry: the daemon's metrics (Prometheus text at `/metrics`) and systemd notifications.

pub mod metrics;
pub mod systemd;

pub use metrics::Metrics;
