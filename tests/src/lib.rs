//! Helpers for the end-to-end tests: start real services on free loopback ports.
