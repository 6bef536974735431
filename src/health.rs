//! How healthy one GitRepository is, from its spec and status. Pure: shared by the exporter,
//! `fluxgate report` and the janitor.
