//! Starting and stopping a simulator: one listener serves Jira, ServiceNow, Security Hub and the
//! operator views, because their paths never collide.

use std::time::Duration;

use axum::Router;
use axum::middleware;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::config::SimConfig;
use crate::conn::{ConnHandle, CuttableListener};
use crate::state::SharedState;
use crate::{faults, jira, jira_meta, ops, securityhub, servicenow};

/// A simulator that has not started listening yet; most callers want [`Simulator::start`].
pub struct Simulator {
    state: SharedState,
}

impl Simulator {
    /// Prepares a simulator whose links (`self` URLs) point at `base_url`.
    pub fn new(config: SimConfig, base_url: impl Into<String>) -> Self {
        Self {
            state: SharedState::new(config, base_url.into()),
        }
    }

    pub fn state(&self) -> SharedState {
        self.state.clone()
    }

    /// All routes; faults and request counting apply to the API paths only. Served without
    /// [`Simulator::start`], the `close` ambiguous-create fault cannot cut connections and answers
    /// 502 instead.
    pub fn router(&self) -> Router {
        let api = Router::new()
            .merge(jira::routes())
            .merge(servicenow::routes())
            .merge(securityhub::routes())
            .merge(jira_meta::routes())
            .layer(middleware::from_fn_with_state(
                self.state.clone(),
                faults::api_layer,
            ));
        api.merge(ops::routes()).with_state(self.state.clone())
    }

    /// Binds `addr` (use port 0 for a free port) and serves until the handle is shut down or
    /// dropped.
    pub async fn start(config: SimConfig, addr: &str) -> std::io::Result<SimHandle> {
        let listener = TcpListener::bind(addr).await?;
        let local = listener.local_addr()?;
        let base_url = format!("http://{local}");
        let sim = Simulator::new(config, base_url.clone());
        let app = sim
            .router()
            .into_make_service_with_connect_info::<ConnHandle>();
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let shutdown = async {
                // A dropped sender also means "stop".
                let _ = rx.await;
            };
            if let Err(e) = axum::serve(CuttableListener(listener), app)
                .with_graceful_shutdown(shutdown)
                .await
            {
                tracing::error!(error = %e, "simulator server stopped with an error");
            }
        });
        Ok(SimHandle {
            base_url,
            port: local.port(),
            state: sim.state,
            stop: Some(tx),
            task: Some(task),
        })
    }
}

/// A running simulator. Dropping it stops the server at once; [`SimHandle::shutdown`] lets
/// in-flight requests finish first.
pub struct SimHandle {
    /// `http://127.0.0.1:PORT`: the base URL for Jira, ServiceNow and Security Hub alike.
    pub base_url: String,
    pub port: u16,
    pub state: SharedState,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl SimHandle {
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let abort = task.abort_handle();
            // Idle keep-alive connections must not hold a test hostage.
            if tokio::time::timeout(Duration::from_secs(5), task)
                .await
                .is_err()
            {
                abort.abort();
            }
        }
    }
}

impl Drop for SimHandle {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}
