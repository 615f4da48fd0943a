//! The HTTP side on rank 0: an axum router on its own tokio runtime (own threads), the API-key
//! check, request counting, and the small endpoints (`/v1/models`, `/health`, `/metrics`).

use std::net::SocketAddr;
use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::{DefaultBodyLimit, Path, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};

use super::api::{ModelCard, ModelList};
use super::endpoints::{chat_completions, completions};
use super::error::{ApiError, ServeError};
use super::metrics::Metrics;
use super::scheduler::{Limits, Submission};
use crate::chat_template::RenderOptions;
use crate::tokenizer::ModelTokenizer;

/// Largest request body: room for a prompt that fills a 128k-token context.
const MAX_BODY_BYTES: usize = 16 << 20;

/// Worker threads of the HTTP runtime: the engine's step loop has the other cores.
const HTTP_THREADS: usize = 2;

/// What the HTTP side needs to know.
pub struct ServerConfig {
    pub host: String,
    pub port: u16,
    pub model_name: String,
    pub api_key: Option<String>,
    pub tokenizer: Arc<ModelTokenizer>,
    pub context: usize,
    pub vocab_size: usize,
    pub end_of_generation: Vec<u32>,
    pub render: RenderOptions,
    pub metrics: Metrics,
}

/// Shared by every handler.
pub struct AppState {
    pub model_name: String,
    pub created: u64,
    api_key: Option<String>,
    pub tokenizer: Arc<ModelTokenizer>,
    pub context: usize,
    pub vocab_size: usize,
    pub end_of_generation: Vec<u32>,
    pub render: RenderOptions,
    pub submit: Sender<Submission>,
    pub limits: Arc<Limits>,
    pub metrics: Metrics,
}

/// The running HTTP server.
pub struct ServerHandle {
    pub address: SocketAddr,
    thread: std::thread::JoinHandle<()>,
}

impl ServerHandle {
    /// Waits for the server to end (after SIGINT/SIGTERM and its open requests).
    pub fn join(self) {
        if self.thread.join().is_err() {
            tracing::error!("the HTTP server thread panicked");
        }
    }
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Binds the address and serves on new threads until SIGINT or SIGTERM; submissions go to
/// `submit`. The server's state (and so `submit`) is dropped when it ends.
pub fn start(
    config: ServerConfig,
    submit: Sender<Submission>,
    limits: Arc<Limits>,
) -> Result<ServerHandle, ServeError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(HTTP_THREADS)
        .thread_name("http")
        .enable_all()
        .build()
        .map_err(ServeError::Runtime)?;
    let address = format!("{}:{}", config.host, config.port);
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind(&address))
        .map_err(|source| ServeError::Bind {
            address: address.clone(),
            source,
        })?;
    let local = listener
        .local_addr()
        .map_err(|source| ServeError::Bind { address, source })?;
    let state = Arc::new(AppState {
        model_name: config.model_name,
        created: unix_now(),
        api_key: config.api_key,
        tokenizer: config.tokenizer,
        context: config.context,
        vocab_size: config.vocab_size,
        end_of_generation: config.end_of_generation,
        render: config.render,
        submit,
        limits,
        metrics: config.metrics,
    });
    let app = router(state);
    let thread = std::thread::Builder::new()
        .name("http-server".into())
        .spawn(move || {
            let served = runtime.block_on(async move {
                axum::serve(listener, app)
                    .with_graceful_shutdown(shutdown_signal())
                    .await
            });
            if let Err(e) = served {
                tracing::error!("HTTP server: {e}");
            }
            // Dropping the runtime drops every task and the state with it, which tells the
            // scheduler that no more requests will come.
            drop(runtime);
        })
        .map_err(ServeError::Runtime)?;
    Ok(ServerHandle {
        address: local,
        thread,
    })
}

/// The routes: the `/v1` API behind the API key; health and metrics open.
pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/v1/models", get(list_models))
        .route("/v1/models/{id}", get(get_model))
        .route("/v1/completions", post(completions))
        .route("/v1/chat/completions", post(chat_completions))
        .route_layer(middleware::from_fn_with_state(
            Arc::clone(&state),
            require_api_key,
        ))
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(middleware::from_fn_with_state(
            Arc::clone(&state),
            count_requests,
        ))
        .with_state(state)
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let interrupt = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = interrupt => {},
        _ = terminate => {},
    }
    eprintln!("engine serve: shutting down after the open requests");
}

/// 401 unless the request carries the configured key as a bearer token.
async fn require_api_key(
    State(state): State<Arc<AppState>>,
    request: Request,
    next: Next,
) -> Response {
    let Some(expected) = &state.api_key else {
        return next.run(request).await;
    };
    let given = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match given {
        None => ApiError::unauthorized("missing API key: send it as `Authorization: Bearer <key>`")
            .into_response(),
        Some(key) if !same_bytes(key.trim().as_bytes(), expected.as_bytes()) => {
            ApiError::unauthorized("incorrect API key provided").into_response()
        }
        Some(_) => next.run(request).await,
    }
}

/// Compares without stopping at the first difference, so timing does not reveal the key.
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Counts every response by route and status.
async fn count_requests(
    State(state): State<Arc<AppState>>,
    request: Request,
    next: Next,
) -> Response {
    let route = match request.uri().path() {
        p
        @ ("/v1/models" | "/v1/completions" | "/v1/chat/completions" | "/health" | "/metrics") => {
            p.to_owned()
        }
        p if p.starts_with("/v1/models/") => "/v1/models/{id}".to_owned(),
        _ => "other".to_owned(),
    };
    let response = next.run(request).await;
    state
        .metrics
        .requests
        .with_label_values(&[route.as_str(), response.status().as_str()])
        .inc();
    response
}

fn model_card(state: &AppState) -> ModelCard {
    ModelCard {
        id: state.model_name.clone(),
        object: "model",
        created: state.created,
        owned_by: "shardlab",
    }
}

async fn list_models(State(state): State<Arc<AppState>>) -> Json<ModelList> {
    Json(ModelList {
        object: "list",
        data: vec![model_card(&state)],
    })
}

async fn get_model(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Json<ModelCard>, ApiError> {
    if id == state.model_name {
        Ok(Json(model_card(&state)))
    } else {
        Err(ApiError {
            status: StatusCode::NOT_FOUND,
            ..ApiError::invalid_param("model", format!("the model `{id}` does not exist"))
                .with_code("model_not_found")
        })
    }
}

async fn health() -> &'static str {
    "ok"
}

async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    let limits = &state.limits;
    state.metrics.queue_depth.set(limits.waiting() as i64);
    state.metrics.running.set(limits.running() as i64);
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
        .into_response()
}

async fn not_found(request: Request) -> ApiError {
    ApiError::not_found(format!(
        "no route {} {}",
        request.method(),
        request.uri().path()
    ))
}

async fn method_not_allowed(request: Request) -> ApiError {
    ApiError {
        status: StatusCode::METHOD_NOT_ALLOWED,
        ..ApiError::invalid(format!(
            "{} is not allowed on {}",
            request.method(),
            request.uri().path()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_comparison() {
        assert!(same_bytes(b"abc", b"abc"));
        assert!(!same_bytes(b"abc", b"abd"));
        assert!(!same_bytes(b"abc", b"abcd"));
    }
}
