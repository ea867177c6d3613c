//! Configuration file loading and validation.
