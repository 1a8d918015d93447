//! What every long-running command shares: graceful shutdown, the health / metrics HTTP server and
//! telemetry (logs and every metric's name and help).

pub mod server;
pub mod shutdown;
pub mod telemetry;
