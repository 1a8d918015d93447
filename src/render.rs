//! Payload builders (placeholder).
