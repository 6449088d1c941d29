//! gRPC `net.Orchestrator/GetOrchestrator` (server/rpc.go:527-685).

use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use lpgw_proto::net::orchestrator_server::{Orchestrator, OrchestratorServer};
use lpgw_proto::{OrchestratorInfo, OrchestratorRequest, PriceInfo};
use tonic::{Request as GrpcRequest, Response as GrpcResponse, Status};

use super::{Orch, caps, random_manifest_id, unix_now};
use crate::keys::checksum_address;

#[derive(Debug, Clone)]
struct Service(Arc<Orch>);

/// Sum of the prices of the requested models; `None` when none is priced here.
fn price_for(o: &Orch, models: &[String]) -> Option<PriceInfo> {
    let priced: Vec<PriceInfo> = models
        .iter()
        .filter(|m| o.serves(m))
        .filter_map(|m| o.price(Some(m)))
        .collect();
    let first = priced.first()?.clone();
    Some(PriceInfo {
        price_per_unit: priced.iter().map(|p| p.price_per_unit).sum(),
        pixels_per_unit: first.pixels_per_unit,
        ..Default::default()
    })
}

impl Service {
    fn answer(&self, req: &OrchestratorRequest) -> Result<OrchestratorInfo, Status> {
        let o = &self.0;
        if o.onchain {
            // Onchain orchestrators check the payer's signature over its checksummed address.
            let ok = <[u8; 20]>::try_from(req.address.as_slice())
                .is_ok_and(|a| o.keys.verify(&a, checksum_address(&a).as_bytes(), &req.sig));
            if !ok {
                return Err(Status::unknown(
                    "Invalid orchestrator request: invalid signature",
                ));
            }
        }
        let now = unix_now();
        let session = random_manifest_id();
        let Some(req_caps) = req.capabilities.as_ref() else {
            let mut info = o.base_info(o.price(None), session, now);
            info.capabilities = Some(o.capabilities());
            if o.onchain {
                info.capabilities_prices =
                    o.models.iter().filter_map(|m| o.price(Some(m))).collect();
            }
            return Ok(info);
        };
        let models = caps::requested_lv2v_models(req_caps);
        if !req.ignore_capacity_check && !models.is_empty() && models.iter().all(|m| o.idle(m) == 0)
        {
            return Err(Status::unknown(
                "Invalid orchestrator request: OrchestratorCapped",
            ));
        }
        let price = price_for(o, &models).or_else(|| o.price(None));
        let mut info = o.base_info(price, session, now);
        info.capabilities = Some(o.capabilities());
        Ok(info)
    }
}

#[tonic::async_trait]
impl Orchestrator for Service {
    async fn get_orchestrator(
        &self,
        request: GrpcRequest<OrchestratorRequest>,
    ) -> Result<GrpcResponse<OrchestratorInfo>, Status> {
        let req = request.into_inner();
        let res = self.answer(&req);
        if let Err(e) = &res {
            tracing::debug!(error = %e.message(), "get orchestrator refused");
        }
        res.map(GrpcResponse::new)
    }
}

/// Latency and garbage-answer faults in front of the gRPC service.
async fn faults(State(o): State<Arc<Orch>>, req: Request, next: Next) -> Response {
    let latency = o.faults.latency();
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    if o.faults.garbage_grpc() {
        // One gRPC frame (uncompressed, 5 bytes) that is not a valid OrchestratorInfo.
        let body = vec![0u8, 0, 0, 0, 5, 0xff, 0xff, 0xff, 0xff, 0xff];
        return (
            [
                (http::header::CONTENT_TYPE, "application/grpc"),
                (http::HeaderName::from_static("grpc-status"), "0"),
            ],
            body,
        )
            .into_response();
    }
    next.run(req).await
}

/// Routes `/net.Orchestrator/*` to the tonic service.
pub(super) fn router(o: Arc<Orch>) -> Router {
    let svc = OrchestratorServer::new(Service(o.clone()));
    Router::new()
        .route_service("/net.Orchestrator/{*method}", svc)
        .layer(middleware::from_fn_with_state(o, faults))
}
