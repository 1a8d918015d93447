//! From a received message to tickets: [`plan`] (decode, route, render), [`lifecycle`] (claims,
//! intents, create or update, exactly once), [`worker`] (the queue loop) and [`health`] (pausing a
//! connection that cannot work, and probing it back).

pub mod escalation;
pub mod health;
pub mod lifecycle;
pub mod plan;
pub mod worker;
