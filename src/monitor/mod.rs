//! Monitoring outputs: metrics for Prometheus (node_exporter's textfile
//! collector). The Nagios-style verdict is [`crate::ops::status`].

pub mod prometheus;
