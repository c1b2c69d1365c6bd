//! The engine: decides where units run.
