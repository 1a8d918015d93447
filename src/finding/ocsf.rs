//! OCSF decoding (placeholder).
