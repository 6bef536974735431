//! `fluxgate report`: the exporter's numbers, computed offline from `kubectl get gitrepositories
//! -A -o json`.

use serde_json::Value;
use time::OffsetDateTime;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ReportFormat {
    Table,
    Json,
}

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("encoding the report: {0}")]
    Encode(#[from] serde_json::Error),
}

/// Renders the report for these GitRepository objects as of `now`.
pub fn render(
    _objects: &[Value],
    _now: OffsetDateTime,
    _format: ReportFormat,
) -> Result<String, ReportError> {
    Ok(String::new())
}
