//! One media session: a job's encoder output published to its input channel and its output
//! channel fed to a decoder, under one cancellation token.
//!
//! Every user of a job's media — the service, `lpgw stream`, the benchmarks — wires the
//! same two tasks: [`publish_segments`] from an encoder into a trickle publisher, and
//! [`feed_output`] from a trickle subscriber into a decoder. [`MediaSession::start`] does
//! it once, and decides how the channels are reached in one place ([`ChannelAccess`]), so
//! no caller assembles trickle clients or chooses TLS on its own. When the job's channels
//! change under it (a Scope runner restarted), [`MediaSession::rewire`] moves both
//! directions to the new ones and keeps the encoder and the decoder.

use std::sync::Arc;

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
    /// Keep the decoder open when an output channel ends by itself; close it only when the
    /// session stops (its token fires). For users that [`MediaSession::rewire`]: a runner
    /// that restarts may close its old channels well before it makes new ones, and the
    /// decoder must still be there for them. Default `false`: the end of the output closes
    /// the decoder, so its frames end too.
    pub rewirable: bool,
}

/// A running media session. Both tasks stop when the token given to
/// [`MediaSession::start`] fires; dropping the session does not stop them.
///
/// A session can move to new channels while it runs ([`MediaSession::rewire`]): a Scope
/// runner that restarts creates its media channels again, and the job's encoder and decoder
/// carry on across the move, so clients see a gap, not a new stream. Each set of channels
/// is one *generation*; the encoder's segments reach the current generation through one
/// forwarding task, which owns the encoder's queue for the session's whole life.
pub struct MediaSession {
    /// The current generation's tasks, until a caller takes them.
    tasks: Option<(SessionTask, SessionTask)>,
    /// Stops the current generation only.
    generation_cancel: CancellationToken,
    generation: u64,
    /// Where the forwarder sends segments from now on.
    switch: mpsc::UnboundedSender<mpsc::Sender<SegmentEvent>>,
    decoder: Arc<SegmentInput>,
    opts: SessionOptions,
    cancel: CancellationToken,
    /// What the publishing tasks did so far, every generation together.
    pub input_stats: StatsHandle,
    /// What the feeding tasks did so far, every generation together.
    pub output_stats: StatsHandle,
}

/// Segment events queued between the forwarder and one generation's publishing task.
const GENERATION_QUEUE: usize = 64;

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
        let (switch, targets) = mpsc::unbounded_channel();
        let mut session = Self {
            tasks: None,
            generation_cancel: cancel.child_token(),
            generation: 0,
            switch,
            decoder: Arc::new(decoder),
            opts,
            cancel,
            input_stats: StatsHandle::new(),
            output_stats: StatsHandle::new(),
        };
        session.tasks = Some(session.spawn_generation(channels)?);
        tokio::spawn(forward(segments, targets).instrument(tracing::Span::current()));
        if session.opts.rewirable && session.opts.feed.close_at_end {
            let (root, decoder) = (session.cancel.clone(), session.decoder.clone());
            tokio::spawn(async move {
                root.cancelled().await;
                decoder.close();
            });
        }
        Ok(session)
    }

    /// Moves the session to new channels: the current generation stops (its tasks end
    /// with `Ok`), and a new one publishes the encoder's segments from the next segment
    /// start on and feeds the new output into the same decoder. Its tasks are then
    /// available from [`Self::take_tasks`].
    pub fn rewire(&mut self, channels: &SessionChannels) -> Result<(), BridgeError> {
        let cancel = self.cancel.child_token();
        let old = std::mem::replace(&mut self.generation_cancel, cancel);
        old.cancel();
        self.generation += 1;
        self.tasks = Some(self.spawn_generation(channels)?);
        Ok(())
    }

    /// Which set of channels the session is on: 0 at the start, one more per
    /// [`Self::rewire`].
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The current generation's two tasks (publishing first, then feeding), once.
    pub fn take_tasks(&mut self) -> Option<(SessionTask, SessionTask)> {
        self.tasks.take()
    }

    /// Splits the session into its two tasks, for callers that never rewire it.
    /// The first is the publishing task, the second the feeding task.
    ///
    /// # Panics
    /// If the tasks were taken already with [`Self::take_tasks`].
    pub fn into_tasks(mut self) -> (SessionTask, SessionTask) {
        self.tasks
            .take()
            .expect("the session's tasks were taken already")
    }

    fn spawn_generation(
        &self,
        channels: &SessionChannels,
    ) -> Result<(SessionTask, SessionTask), BridgeError> {
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
        if let Some(start) = self.opts.output_start {
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
        let (tx, segments) = mpsc::channel(GENERATION_QUEUE);
        // A forwarder that is gone (the encoder ended) leaves this generation's queue
        // closed, which ends its publishing task as the end of the encoder would.
        let _ = self.switch.send(tx);
        let span = tracing::Span::current();
        let feed = tokio::spawn({
            let (st, c, mut fo) = (
                self.output_stats.clone(),
                self.generation_cancel.clone(),
                self.opts.feed.clone(),
            );
            let root = self.cancel.clone();
            let decoder = self.decoder.clone();
            // The decoder outlives a generation: it is closed when the session stops or
            // (unless the session is rewirable) the output channel ends, never when a
            // rewire stops this generation.
            let close_at_end = std::mem::replace(&mut fo.close_at_end, false);
            let ends_decoder = close_at_end && !self.opts.rewirable;
            async move {
                let r = feed_output(&mut sub, &decoder, fo, st, c.clone()).await;
                if (root.is_cancelled() && close_at_end) || (ends_decoder && !c.is_cancelled()) {
                    decoder.close();
                }
                r
            }
            .instrument(span.clone())
        });
        let publish = tokio::spawn({
            let (st, c, po) = (
                self.input_stats.clone(),
                self.generation_cancel.clone(),
                self.opts.publish.clone(),
            );
            let preconnect = self.opts.preconnect;
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
        Ok((publish, feed))
    }
}

/// Hands the encoder's segment events to the current generation's queue, switching to a
/// new queue as soon as one arrives. A generation that stopped reading loses what is sent
/// to it; the next one discards data until the next segment start, so every segment it
/// publishes is whole.
async fn forward(
    mut segments: mpsc::Receiver<SegmentEvent>,
    mut targets: mpsc::UnboundedReceiver<mpsc::Sender<SegmentEvent>>,
) {
    let mut current: Option<mpsc::Sender<SegmentEvent>> = None;
    while let Some(ev) = segments.recv().await {
        while let Ok(next) = targets.try_recv() {
            current = Some(next);
        }
        if let Some(tx) = &current
            && tx.send(ev).await.is_err()
        {
            // This generation stopped; wait for the next (or drop events until then).
            current = None;
        }
    }
}
