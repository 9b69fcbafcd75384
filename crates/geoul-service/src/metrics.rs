//! Service metrics, registered into the node's Prometheus registry.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Labels of call counters.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CallLabels {
    /// Service.
    pub service: String,
    /// `ok | rejected | overloaded | deadline | unavailable | behind | internal
    /// | bad_request | not_hosted | replayed`.
    pub outcome: &'static str,
}

/// Labels per service.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ServiceLabels {
    /// Service.
    pub service: String,
}

/// Handles to service metrics; clones share values.
#[derive(Clone, Debug)]
pub struct ServiceMetrics {
    /// Calls by service and outcome.
    pub calls: Family<CallLabels, Counter>,
    /// Seconds per call, by service.
    pub latency: Family<ServiceLabels, Histogram>,
    /// Handler panics, by service (each one a bug in the service).
    pub panics: Family<ServiceLabels, Counter>,
}

fn latency_histogram() -> Histogram {
    Histogram::new([
        0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1, 1.0, 5.0,
    ])
}

impl Default for ServiceMetrics {
    fn default() -> Self {
        Self {
            calls: Family::default(),
            latency: Family::new_with_constructor(latency_histogram),
            panics: Family::default(),
        }
    }
}

impl ServiceMetrics {
    /// Registers under `geoul_service_*`.
    pub fn register(&self, registry: &mut Registry) {
        let r = registry.sub_registry_with_prefix("geoul_service");
        r.register(
            "calls",
            "Service calls by service and outcome",
            self.calls.clone(),
        );
        r.register(
            "call_seconds",
            "Seconds per service call on the serving node",
            self.latency.clone(),
        );
        r.register(
            "panics",
            "Handler panics contained by the host, by service",
            self.panics.clone(),
        );
    }
}
