//! One entry point for every model: which start routes to try, in which order (a pure
//! policy), and the loop that tries them and collects a rejection per failed attempt.

use std::sync::Arc;
use std::time::Instant;

use serde_json::Value;
use tracing::{debug, instrument};
use url::Url;

use crate::config::LiveSettings;
use crate::discovery::lv2v_cap;
use crate::error::{Error, RejectReason, Rejection};
use crate::gateway::{Gateway, Inner};
use crate::handle::Job;
use crate::lv2v::StartRequest;
use crate::runner::{
    RunnerDiscovery, RunnerFilter, RunnerMode, RunnerOffer, RunnerRequest, RunnerSession,
    apply_ceiling, cool_down, funding_for, paid_request,
};
use crate::scope::{ScopeJob, ScopeUrls};

/// A way to start a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Route {
    /// Discover live runners for `live-video-to-video/<model>`, reserve (or call) one, pay
    /// it, start the app (spec §1).
    LiveRunner,
    /// A serverless entry (go-livepeer's `POST /scope`, spec §2.4).
    Serverless,
    /// The legacy AI-worker path `POST /live-video-to-video` (spec §2).
    Legacy,
}

impl Route {
    /// The route's name as the service and the CLI print it (`flow`): `live-runner`,
    /// `serverless` or `lv2v`.
    pub fn flow_name(self) -> &'static str {
        match self {
            Self::LiveRunner => "live-runner",
            Self::Serverless => "serverless",
            Self::Legacy => "lv2v",
        }
    }
}

/// Which routes a model takes, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartPolicy {
    /// Models that are live-runner apps.
    pub live_models: Vec<String>,
    /// Allowed fallbacks.
    pub fallback: crate::config::Fallback,
}

impl StartPolicy {
    /// The policy of the live settings.
    pub fn from_settings(live: &LiveSettings) -> Self {
        Self {
            live_models: live.models.clone(),
            fallback: live.fallback.clone(),
        }
    }

    /// Whether `model` is a live-runner model.
    pub fn is_live_model(&self, model: &str) -> bool {
        self.live_models.iter().any(|m| m.trim() == model)
    }

    /// The routes for `model`, in order: a live-runner model takes live runners, then
    /// serverless entries, then the legacy path (each fallback when enabled); a legacy model
    /// takes the legacy path, then live runners offering the same app when enabled.
    pub fn routes(&self, model: &str) -> Vec<Route> {
        let f = &self.fallback;
        if self.is_live_model(model) {
            let mut r = vec![Route::LiveRunner];
            if f.serverless {
                r.push(Route::Serverless);
            }
            if f.legacy {
                r.push(Route::Legacy);
            }
            r
        } else if f.live_runner_for_legacy {
            vec![Route::Legacy, Route::LiveRunner]
        } else {
            vec![Route::Legacy]
        }
    }
}

/// The app path of a live-runner job start: Scope's `/scope` (reference SDK); other LV2V
/// apps are assumed to take the same job body at `/live-video-to-video`.
pub(crate) fn app_start_path(model: &str) -> &'static str {
    if model == "scope" {
        "scope"
    } else {
        "live-video-to-video"
    }
}

impl Gateway {
    /// Starts `req.model_id` by the routes of [`StartPolicy`]: each failed attempt (a
    /// runner, a serverless entry, an orchestrator) adds a rejection, and the error lists
    /// them all. Live-runner jobs come back with their Scope stream started.
    #[instrument(skip_all, fields(model = %req.model_id))]
    pub async fn start(&self, req: &StartRequest) -> Result<Job, Error> {
        let paid = !self.inner.settings.is_offchain();
        let model = req.model_id.trim();
        if model.is_empty() {
            return Err(Error::Config("model_id is required".into()));
        }
        self.check_scope_params(req)?;
        let policy = StartPolicy::from_settings(&self.inner.settings.live);
        let mut rejections = Vec::new();
        let mut unreached: Option<Error> = None;
        let mut discovery: Option<RunnerDiscovery> = None;
        for route in policy.routes(model) {
            debug!(?route, "trying route");
            match route {
                Route::Legacy => match self.start_lv2v(req).await {
                    Ok(job) => return Ok(Job::lv2v(job, paid)),
                    Err(e) => note_unstarted(e, &mut rejections, &mut unreached),
                },
                Route::LiveRunner | Route::Serverless => {
                    if discovery.is_none() {
                        match self.discover_runners(&self.runner_filter(model)).await {
                            Ok(d) => {
                                rejections.extend(d.rejections.iter().cloned());
                                discovery = Some(d);
                            }
                            Err(e) => {
                                note_unstarted(e, &mut rejections, &mut unreached);
                                discovery = Some(RunnerDiscovery::default());
                            }
                        }
                    }
                    let answered = discovery
                        .as_ref()
                        .map(|d| d.answered.clone())
                        .unwrap_or_default();
                    let offers: Vec<RunnerOffer> = discovery
                        .as_ref()
                        .map(|d| d.offers.clone())
                        .unwrap_or_default()
                        .into_iter()
                        .filter(|o| {
                            (o.mode == RunnerMode::Serverless) == (route == Route::Serverless)
                        })
                        .collect();
                    match self
                        .start_on_runners(offers, &answered, req, route, &mut rejections)
                        .await
                    {
                        Some(job) => return Ok(Job::scope(job, paid)),
                        // What one Scope runner refused, every route would refuse.
                        None if refused(&rejections) => break,
                        None => continue,
                    }
                }
            }
        }
        if rejections.is_empty()
            && let Some(e) = unreached
        {
            return Err(e);
        }
        Err(Error::StartFailed {
            model: model.to_owned(),
            rejections,
        })
    }

    /// Starts a live-runner model on live runners, then serverless entries (no legacy
    /// path), whatever the policy says.
    pub async fn start_scope(&self, req: &StartRequest) -> Result<ScopeJob, Error> {
        self.check_scope_params(req)?;
        let model = req.model_id.trim();
        let found = self.discover_runners(&self.runner_filter(model)).await?;
        let mut rejections = found.rejections.clone();
        for route in [Route::LiveRunner, Route::Serverless] {
            let offers = found
                .offers
                .iter()
                .filter(|o| (o.mode == RunnerMode::Serverless) == (route == Route::Serverless))
                .cloned()
                .collect();
            if let Some(job) = self
                .start_on_runners(offers, &found.answered, req, route, &mut rejections)
                .await
            {
                return Ok(job);
            }
            if refused(&rejections) {
                break;
            }
        }
        Err(Error::NoRunnerAvailable { rejections })
    }

    fn runner_filter(&self, model: &str) -> RunnerFilter {
        RunnerFilter {
            apps: vec![lv2v_cap(model)],
            gpus: self.inner.settings.live.gpus.clone(),
        }
    }

    /// Scope parameters that cannot make a start plan are the caller's mistake: refused
    /// before a session is reserved (and paid), not after.
    fn check_scope_params(&self, req: &StartRequest) -> Result<(), Error> {
        if app_start_path(req.model_id.trim()) != "scope" {
            return Ok(());
        }
        let defaults = &self.inner.settings.live.scope.default_pipelines;
        crate::scope::check_params(req.params.as_ref(), defaults)
            .map_err(|e| Error::InvalidRequest(format!("bad scope parameters: {e}")))
    }

    /// Tries `offers` in order (ceiling and cool-downs first); `None` when all failed.
    async fn start_on_runners(
        &self,
        offers: Vec<RunnerOffer>,
        answered: &[String],
        req: &StartRequest,
        route: Route,
        rejections: &mut Vec<Rejection>,
    ) -> Option<ScopeJob> {
        if offers.is_empty() {
            let what = if route == Route::Serverless {
                "serverless entry"
            } else {
                "live runner"
            };
            // Each source that answered says so; those that failed are rejected already.
            for url in answered {
                rejections.push(Rejection {
                    url: url.clone(),
                    reason: RejectReason::Unavailable(format!(
                        "no {what} offers {}",
                        lv2v_cap(&req.model_id)
                    )),
                });
            }
            return None;
        }
        let (offers, over) = apply_ceiling(offers, &self.inner.settings.ceiling);
        rejections.extend(over);
        for offer in offers {
            let left = self
                .inner
                .cooldowns
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remaining(&offer.url, Instant::now());
            if let Some(left) = left {
                rejections.push(Rejection {
                    url: offer.url.clone(),
                    reason: RejectReason::CoolingDown(left.as_secs().max(1)),
                });
                continue;
            }
            match try_runner(&self.inner, &offer, req).await {
                Ok(job) => return Some(job),
                Err(reason @ RejectReason::PipelineRefused(_)) => {
                    // Every runner would refuse it, and each attempt may be paid.
                    rejections.push(Rejection {
                        url: offer.url.clone(),
                        reason,
                    });
                    return None;
                }
                Err(reason) => {
                    debug!(runner = %offer.url, %reason, "runner attempt failed");
                    rejections.push(Rejection {
                        url: offer.url.clone(),
                        reason,
                    });
                }
            }
        }
        None
    }
}

/// Whether the last attempt was a Scope runner refusing the pipelines or parameters.
fn refused(rejections: &[Rejection]) -> bool {
    rejections
        .last()
        .is_some_and(|r| matches!(r.reason, RejectReason::PipelineRefused(_)))
}

/// Records why a route did not start: a failed discovery endpoint is a rejection at its URL,
/// candidates tried are their rejections, and a start with nothing to ask (no orchestrators,
/// no source) names no URL, so its error is kept for when no other route gets further.
fn note_unstarted(e: Error, rejections: &mut Vec<Rejection>, unreached: &mut Option<Error>) {
    match e {
        Error::Discovery { url, reason } => rejections.push(Rejection {
            url,
            reason: RejectReason::Unavailable(reason),
        }),
        e if !e.rejections().is_empty() => rejections.extend_from_slice(e.rejections()),
        e => {
            unreached.get_or_insert(e);
        }
    }
}

fn app_failed(status: u16, body: String) -> RejectReason {
    RejectReason::AppCallFailed { status, body }
}

/// One attempt on one runner: reserve/call, start the app, start the stream. A failure
/// after a reservation stops the session at once and cools the runner down.
async fn try_runner(
    inner: &Arc<Inner>,
    offer: &RunnerOffer,
    req: &StartRequest,
) -> Result<ScopeJob, RejectReason> {
    let body = req.to_json();
    let params = req
        .params
        .clone()
        .unwrap_or_else(|| Value::Object(Default::default()));
    let path = app_start_path(req.model_id.trim());
    let mut job = match offer.mode {
        RunnerMode::Persistent => {
            let session = RunnerSession::reserve(inner, offer, &req.wallet).await?;
            let reply = match session.call(&RunnerRequest::json(path, &body)).await {
                Ok(r) => r,
                Err(e) => {
                    session.close().await;
                    cool_down(inner, &offer.url);
                    return Err(app_failed(0, e.to_string()));
                }
            };
            let status = reply.status();
            let base = Url::parse(session.app_url())
                .map_err(|e| RejectReason::InvalidUrl(e.to_string()))?;
            let parsed = if (200..300).contains(&status) {
                reply
                    .json()
                    .await
                    .map_err(|e| e.to_string())
                    .and_then(|v| ScopeUrls::from_json(&v, &base))
                    .map_err(|e| app_failed(status, e))
            } else {
                let text = reply
                    .bytes()
                    .await
                    .map(|b| crate::http::snippet(&b))
                    .unwrap_or_default();
                Err(app_failed(status, text))
            };
            let urls = match parsed {
                Ok(u) => u,
                Err(reason) => {
                    session.close().await;
                    cool_down(inner, &offer.url);
                    return Err(reason);
                }
            };
            ScopeJob::spawn(inner.clone(), urls, offer.url.clone(), Some(session), None)?
        }
        RunnerMode::SingleShot | RunnerMode::Serverless => {
            let rr = RunnerRequest::json(
                if offer.mode == RunnerMode::SingleShot {
                    path
                } else {
                    ""
                },
                &body,
            );
            let url = rr.url(&offer.url)?;
            let paid = paid_request(inner, offer, &url, &rr, &req.wallet).await?;
            let was_paid = paid.payer.is_some();
            let funding = funding_for(paid.payer);
            let parsed = match paid.resp.bytes().await {
                Ok(b) => serde_json::from_slice::<Value>(&b)
                    .map_err(|e| format!("job answer is not JSON: {e}"))
                    .and_then(|v| ScopeUrls::from_json(&v, &url)),
                Err(e) => Err(crate::http::describe(&e.without_url())),
            };
            match parsed {
                Ok(urls) => ScopeJob::spawn(inner.clone(), urls, offer.url.clone(), None, funding)?,
                Err(e) => {
                    drop(funding);
                    if was_paid {
                        cool_down(inner, &offer.url);
                    }
                    return Err(app_failed(200, e));
                }
            }
        }
    };
    match job.start_stream(&params).await {
        Ok(_) => Ok(job),
        Err(e) => {
            let paid = job
                .runner_session()
                .is_some_and(|s| s.payment_stats().paid > 0);
            // The session is stopped at once: nothing paid stays running.
            job.close().await;
            // A runner that refused what was asked works; one that did not answer may not.
            if paid && !matches!(e, Error::ScopeRefused { .. }) {
                cool_down(inner, &offer.url);
            }
            Err(match e {
                Error::ScopeRefused { reason } => RejectReason::PipelineRefused(reason),
                e => RejectReason::ScopeStart(e.to_string()),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Fallback;

    fn policy(fallback: Fallback) -> StartPolicy {
        StartPolicy {
            live_models: vec!["scope".into()],
            fallback,
        }
    }

    #[test]
    fn live_models_fall_back_in_order() {
        let p = policy(Fallback::default());
        assert_eq!(
            p.routes("scope"),
            [Route::LiveRunner, Route::Serverless, Route::Legacy]
        );
        assert_eq!(p.routes("noop"), [Route::Legacy, Route::LiveRunner]);
        let none = policy(Fallback::none());
        assert_eq!(none.routes("scope"), [Route::LiveRunner]);
        assert_eq!(none.routes("noop"), [Route::Legacy]);
        let only_serverless = policy(Fallback {
            serverless: true,
            ..Fallback::none()
        });
        assert_eq!(
            only_serverless.routes("scope"),
            [Route::LiveRunner, Route::Serverless]
        );
    }

    #[test]
    fn app_paths() {
        assert_eq!(app_start_path("scope"), "scope");
        assert_eq!(app_start_path("noop"), "live-video-to-video");
    }
}
