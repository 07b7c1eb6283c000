//! Swarm mode. A VCH is never a swarm node, so it answers what dockerd answers on a node
//! that is in no swarm: a client that checks (docker-py's network tests leave any swarm in
//! their teardown and take only those answers) sees what it expects. Making or joining a
//! swarm is refused in words.

use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::Router;

use crate::{ApiError, AppState};

/// dockerd's words for a swarm request on a node in no swarm.
pub const NOT_A_MANAGER: &str = "This node is not a swarm manager. Use \"docker swarm init\" or \"docker swarm join\" to connect this node to swarm and try again.";
pub const NOT_IN_A_SWARM: &str = "This node is not part of a swarm";

async fn not_a_manager() -> ApiError {
    ApiError::new(StatusCode::SERVICE_UNAVAILABLE, NOT_A_MANAGER)
}

async fn not_in_a_swarm() -> ApiError {
    ApiError::new(StatusCode::SERVICE_UNAVAILABLE, NOT_IN_A_SWARM)
}

async fn refused() -> ApiError {
    ApiError::new(
        StatusCode::NOT_IMPLEMENTED,
        "swarm mode is not supported by vic: a VCH cannot make or join a swarm",
    )
}

/// The swarm, node, service, task, secret and config endpoints.
pub fn routes() -> Router<AppState> {
    let mut r = Router::new()
        .route("/swarm", get(not_a_manager))
        .route("/swarm/init", post(refused))
        .route("/swarm/join", post(refused))
        .route("/swarm/leave", post(not_in_a_swarm))
        .route("/swarm/update", post(not_a_manager))
        .route("/swarm/unlockkey", get(not_a_manager))
        .route("/swarm/unlock", post(not_a_manager));
    for kind in ["nodes", "services", "tasks", "secrets", "configs"] {
        r = r
            .route(&format!("/{kind}"), get(not_a_manager))
            .route(&format!("/{kind}/create"), post(not_a_manager))
            .route(
                &format!("/{kind}/{{id}}"),
                get(not_a_manager).delete(not_a_manager),
            )
            .route(&format!("/{kind}/{{id}}/update"), post(not_a_manager));
    }
    r.route("/services/{id}/logs", get(not_a_manager))
        .route("/tasks/{id}/logs", get(not_a_manager))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_vch_answers_as_a_node_in_no_swarm() {
        let e = not_in_a_swarm().await;
        assert_eq!(
            (e.status, e.message.as_str()),
            (StatusCode::SERVICE_UNAVAILABLE, NOT_IN_A_SWARM)
        );
        assert_eq!(
            not_a_manager().await.status,
            StatusCode::SERVICE_UNAVAILABLE
        );
        let e = refused().await;
        assert_eq!(e.status, StatusCode::NOT_IMPLEMENTED);
        assert!(e.message.contains("not supported by vic"), "{}", e.message);
    }
}
