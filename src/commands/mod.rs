//! One module per CLI command: [`run`] (the worker and its wiring), [`replay`] (the dead-letter
//! queue), [`offline`] (`check` and `render`, which talk to nothing).

pub mod offline;
pub mod replay;
pub mod run;
