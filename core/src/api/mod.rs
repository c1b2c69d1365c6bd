//! HTTP API v1, as pure data and pure decisions.
//!
//! Nothing here touches a socket: the daemon's HTTP front end parses the request line and
//! headers, then hands bodies, query values and registry facts to these functions and turns the
//! result into a response. Every error type here has a `status()` (the HTTP status) and a
//! `Display` that is the exact message fleet v1.0.0 sent, so the front end only has to wrap it in
//! an [`entities::ErrorEntity`].
//!
//! - [`entities`]: the JSON entities (`Unit`, `UnitState`, `Machine`, pages, the error entity)
//!   and [`to_go_json`], which writes a response body byte-for-byte as fleet's Go server did.
//! - [`pagination`]: page tokens (`nextPageToken`) and slicing a sorted list into pages.
//! - [`query`]: URL query strings decoded as Go did (`nextPageToken`, `machineID`, `unitName`).
//! - [`routes`]: which handler a method and path reach, and fleet's 404/405 answers otherwise.
//! - [`machines_patch`]: decoding and validating `PATCH /machines` (metadata edits).
//! - [`units_put`]: the `PUT /units/<name>` decision tree.

mod base64url;
pub mod entities;
mod go_json;
pub mod machines_patch;
pub mod pagination;
pub mod query;
pub mod routes;
pub mod units_put;

pub use entities::{
    ErrorBody, ErrorEntity, Machine, MachinePage, Unit, UnitOption, UnitPage, UnitState,
    UnitStatePage, to_go_json,
};
