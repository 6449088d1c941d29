//! One media session: a job's encoder output published to its input channel and its output
//! channel fed to a decoder, under one cancellation token.
//!
//! Every user of a job's media — the service, `lpgw stream`, the benchmarks — wires the
//! same two tasks: [`publish_segments`] from an encoder into a trickle publisher, and
//! [`feed_output`] from a trickle subscriber into a decoder. [`MediaSession::start`] does
//! it once, and decides how the channels are reached in one place ([`ChannelAccess`]), so
//! no caller assembles trickle clients or chooses TLS on its own.

use lpgw_media::{SegmentEvent, SegmentInput};
use lpgw_trickle::client::{HttpClient, Publisher, PublisherConfig, Subscriber, SubscriberConfig};
use lpgw_trickle::wire::SeqRequest;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use crate::{
    BridgeError, FeedOptions, MPEG_TS, PublishOptions, StatsHandle, feed_output, publish_segments,
};

/// One direction of a session, running: its result once it ends.
pub type SessionTask = JoinHandle<Result<(), BridgeError>>;

/// How the session reaches a job's channels.
#[derive(Clone, Debug)]
pub enum ChannelAccess {
    /// Through the job's own client: its TLS policy and certificate pins, shared with
    /// control and events. What every job started by the gateway uses.
    Pinned(HttpClient),
    /// A client of the session's own that verifies certificates against the system roots.
    Verified,
    /// A client of the session's own that accepts any certificate: for benchmarks and
    /// tools aimed at a local devnet with a self-signed certificate, never for jobs.
    AcceptAnyCertificate,
}

/// Where a session's media goes. The URLs are bearer capabilities: never log them.
#[derive(Clone)]
pub struct SessionChannels {
    /// The input channel; `None` for a stream that takes no input (Scope text mode), whose
    /// encoder output is then drained and dropped.
    pub input: Option<String>,
    /// The output channel (video track 0).
    pub output: String,
    /// How both are reached.
    pub access: ChannelAccess,
}

impl std::fmt::Debug for SessionChannels {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionChannels")
            .field("input", &self.input.as_ref().map(|_| "<redacted>"))
            .field("output", &"<redacted>")
            .field("access", &self.access)
            .finish()
    }
}

/// How the session runs its two directions.
#[derive(Clone, Default)]
pub struct SessionOptions {
    /// Options of the publishing task.
    pub publish: PublishOptions,
    /// Options of the feeding task.
    pub feed: FeedOptions,
    /// Where the output subscription starts; the subscriber's default (the live edge) when
    /// `None`.
    pub output_start: Option<SeqRequest>,
    /// Open the first input POST as soon as the session starts, so the first segment does
    /// not wait for a connection.
    pub preconnect: bool,
}

/// A running media session. Both tasks stop when the token given to
/// [`MediaSession::start`] fires; dropping the session does not stop them.
pub struct MediaSession {
    publish: SessionTask,
    feed: SessionTask,
    /// What the publishing task did so far.
    pub input_stats: StatsHandle,
    /// What the feeding task did so far.
    pub output_stats: StatsHandle,
}

impl MediaSession {
    /// Starts publishing `segments` (an encoder's events) to `channels.input` and feeding
    /// `channels.output` into `decoder`. The subscriber is created first, so no output
    /// segment is missed while the input side starts.
    pub fn start(
        channels: &SessionChannels,
        segments: mpsc::Receiver<SegmentEvent>,
        decoder: SegmentInput,
        opts: SessionOptions,
        cancel: CancellationToken,
    ) -> Result<Self, BridgeError> {
        let (http, insecure_tls) = match &channels.access {
            ChannelAccess::Pinned(c) => (Some(c.clone()), false),
            ChannelAccess::Verified => (None, false),
            ChannelAccess::AcceptAnyCertificate => (None, true),
        };
        let mut sub_cfg = SubscriberConfig {
            http: http.clone(),
            insecure_tls,
            ..SubscriberConfig::default()
        };
        if let Some(start) = opts.output_start {
            sub_cfg.start = start;
        }
        let mut sub = Subscriber::new(&channels.output, sub_cfg)?;
        let publisher = channels
            .input
            .as_deref()
            .map(|url| {
                Publisher::new(
                    url,
                    MPEG_TS,
                    PublisherConfig {
                        http,
                        insecure_tls,
                        ..PublisherConfig::default()
                    },
                )
            })
            .transpose()?;
        let span = tracing::Span::current();
        let output_stats = StatsHandle::new();
        let feed = tokio::spawn({
            let (st, c, fo) = (output_stats.clone(), cancel.clone(), opts.feed);
            async move { feed_output(&mut sub, &decoder, fo, st, c).await }.instrument(span.clone())
        });
        let input_stats = StatsHandle::new();
        let publish = tokio::spawn({
            let (st, c, po) = (input_stats.clone(), cancel, opts.publish);
            let preconnect = opts.preconnect;
            async move {
                match publisher {
                    Some(mut p) => {
                        if preconnect {
                            p.preconnect().await?;
                        }
                        publish_segments(segments, &mut p, po, st, c).await
                    }
                    None => {
                        // No input channel: whatever is encoded goes nowhere.
                        let mut segments = segments;
                        while segments.recv().await.is_some() {}
                        Ok(())
                    }
                }
            }
            .instrument(span)
        });
        Ok(Self {
            publish,
            feed,
            input_stats,
            output_stats,
        })
    }

    /// Splits the session into its two tasks, for callers to wait on.
    /// The first is the publishing task, the second the feeding task.
    pub fn into_tasks(self) -> (SessionTask, SessionTask) {
        (self.publish, self.feed)
    }
}
