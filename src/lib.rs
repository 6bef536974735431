//! fluxgate keeps Flux's source-controller healthy when many GitRepositories fail: a mutating
//! admission webhook that makes new GitRepositories safe, an exporter that makes failures visible,
//! and a janitor that stops endless retries.
//!
//! Two pure decisions sit at the centre and every surface calls them: [`policy`] (how a new object
//! is changed) and [`health`] (how healthy a GitRepository is).

#![forbid(unsafe_code)]

pub mod admission;
pub mod breaker;
pub mod certs;
pub mod cli;
pub mod commands;
pub mod discovery;
pub mod duration;
pub mod election;
pub mod exporter;
pub mod exposition_format;
pub mod flux;
pub mod health;
pub mod janitor;
pub mod manifests;
pub mod marks;
pub mod metrics;
pub mod policy;
pub mod report;
pub mod restore;
pub mod serve;
pub mod server;
pub mod text;
pub mod uid;
