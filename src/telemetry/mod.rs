//! Telemetry: the daemon's metrics (Prometheus text at `/metrics`) and systemd notifications.

pub mod metrics;

pub use metrics::Metrics;
