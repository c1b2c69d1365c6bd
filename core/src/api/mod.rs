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
//! - [`discovery`]: the discovery document (`GET <prefix>/discovery`).
//! - [`front`]: [`front::ApiFront`], the whole API served from a watch-maintained view.
//!
//! A front end's list handler, end to end (page 2 of 150 units):
//!
//! ```
//! use flt_core::api::entities::{ErrorEntity, Unit, UnitPage};
//! use flt_core::api::pagination::{DEFAULT_TOKEN_LIMIT, page_token_from_query, paginate};
//! use flt_core::api::query::query_values;
//! use flt_core::api::routes::{Route, route};
//! use flt_core::api::to_go_json;
//!
//! let registry: Vec<Unit> = (0..150)
//!     .map(|i| Unit { name: format!("u{i:03}.service"), ..Unit::default() })
//!     .collect();
//! let (status, body) = match route("GET", "/flt/v1/units") {
//!     Ok(Route::ListUnits) => {
//!         let tokens = query_values("nextPageToken=ZAACAA%3D%3D", "nextPageToken");
//!         let tokens: Vec<&str> = tokens.iter().map(String::as_str).collect();
//!         match page_token_from_query(&tokens, DEFAULT_TOKEN_LIMIT) {
//!             Ok(token) => {
//!                 let (range, next) = paginate(registry.len(), token);
//!                 let page = UnitPage {
//!                     units: registry[range].to_vec(),
//!                     next_page_token: next.map(|t| t.encode()).unwrap_or_default(),
//!                 };
//!                 (200, to_go_json(&page).unwrap())
//!             }
//!             Err(e) => (e.status(), ErrorEntity::new(e.status(), e.to_string()).to_json()),
//!         }
//!     }
//!     Ok(_) => unreachable!(),
//!     Err(e) => (e.status(), e.entity().to_json()),
//! };
//! assert_eq!(status, 200);
//! assert!(body.starts_with(r#"{"units":[{"name":"u100.service"}"#));
//! assert!(!body.contains("nextPageToken")); // 50 of 100: the last page
//! ```

mod base64url;
pub mod discovery;
pub mod entities;
pub mod front;
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
