//! What every long-running command shares: graceful shutdown and the background tasks it waits for, the health / metrics HTTP server and
//! telemetry (logs and every metric's name and help).

pub mod server;
pub mod shutdown;
pub mod tasks;
pub mod telemetry;
