//! fltctl's command tests: one binary, a module per topic. Commands run in-process against
//! `api_double` (a TEST DOUBLE of fltd's API, not fltd), with a virtual clock.

mod api_double;
mod harness;

mod binary;
mod blocking;
mod create;
mod lifecycle;
mod lists;
mod parsing;
mod remote;
mod tls;
mod tunnel;
