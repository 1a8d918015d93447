//! ASFF decoding (placeholder).
