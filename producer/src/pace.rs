//! Pacing for load generation: a steady `--rate`, or the input's own rhythm (`--event-time`
//! with `--speedup`): gaps between event times, divided by the speedup, become gaps between
//! sends.

use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::Clock;
use governor::middleware::NoOpMiddleware;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};
use kappa_common::time::{EventTimeError, EventTimeFormat};
use tokio::time::Instant;

/// Parses the `--event-time` column for pacing.
#[derive(Debug, Clone)]
pub struct EventTimeParser(pub EventTimeFormat);

impl EventTimeParser {
    pub fn parse(&self, text: &str) -> Result<i64, EventTimeError> {
        self.0.parse_millis(text)
    }
}

/// governor's clock, read from tokio's: waits are tokio sleeps, so pacing follows tokio's
/// time (which tests pause and advance, instead of waiting for real).
#[derive(Debug, Clone)]
struct TokioClock {
    origin: Instant,
}

impl Clock for TokioClock {
    type Instant = Duration;

    fn now(&self) -> Duration {
        self.origin.elapsed()
    }
}

type Limiter = RateLimiter<NotKeyed, InMemoryState, TokioClock, NoOpMiddleware<Duration>>;

pub struct Pacer {
    limiter: Option<(Limiter, TokioClock)>,
    burst: u32,
    speedup: Option<f64>,
    /// First event time seen and the instant it was sent: the replay clock's origin.
    origin: Option<(i64, Instant)>,
}

impl Pacer {
    pub fn new(rate: Option<NonZeroU32>, speedup: Option<f64>) -> Pacer {
        // A burst of a tenth of a second's worth keeps the rate smooth at any scale while
        // letting the limiter admit whole sink batches at high rates.
        let (limiter, burst) = match rate {
            Some(rate) => {
                let burst = NonZeroU32::new((rate.get() / 10).max(1)).expect("at least 1");
                let clock = TokioClock { origin: Instant::now() };
                (Some((RateLimiter::direct_with_clock(Quota::per_second(rate).allow_burst(burst), clock.clone()), clock)), burst.get())
            }
            None => (None, 0),
        };
        Pacer { limiter, burst, speedup, origin: None }
    }

    pub fn is_active(&self) -> bool {
        self.limiter.is_some() || self.speedup.is_some()
    }

    /// How long to wait before sending an event with this event time (speedup pacing), zero
    /// if it is due. Events earlier than their predecessors go at once.
    pub fn delay_for(&mut self, event_time_ms: Option<i64>) -> Duration {
        let (Some(speedup), Some(t)) = (self.speedup, event_time_ms) else {
            return Duration::ZERO;
        };
        let (t0, start) = *self.origin.get_or_insert((t, Instant::now()));
        let offset_ms = ((t - t0).max(0) as f64 / speedup).max(0.0);
        let due = start + Duration::from_secs_f64(offset_ms / 1000.0);
        due.saturating_duration_since(Instant::now())
    }

    /// Waits until the rate limit admits `n` more events.
    pub async fn admit(&self, mut n: u32) {
        let Some((limiter, clock)) = &self.limiter else { return };
        while n > 0 {
            let chunk = NonZeroU32::new(n.min(self.burst)).expect("non-zero");
            match limiter.check_n(chunk).expect("a chunk is within the burst") {
                Ok(()) => n -= chunk.get(),
                Err(not_until) => tokio::time::sleep(not_until.wait_time_from(clock.now())).await,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn speedup_divides_event_gaps() {
        let mut pacer = Pacer::new(None, Some(60.0));
        assert_eq!(pacer.delay_for(Some(0)), Duration::ZERO);
        // One minute of event time at 60x is one second of wall time.
        let d = pacer.delay_for(Some(60_000));
        assert_eq!(d, Duration::from_secs(1));
        tokio::time::advance(Duration::from_millis(400)).await;
        assert_eq!(pacer.delay_for(Some(60_000)), Duration::from_millis(600), "the clock started with the first event");
        assert_eq!(pacer.delay_for(Some(-5)), Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn rate_limits_throughput() {
        let pacer = Pacer::new(NonZeroU32::new(200), None);
        let start = Instant::now();
        pacer.admit(20).await; // the burst, at once
        assert_eq!(start.elapsed(), Duration::ZERO);
        pacer.admit(60).await; // 0.3 s at 200/s
        let elapsed = start.elapsed();
        assert!(elapsed >= Duration::from_millis(295) && elapsed <= Duration::from_millis(305), "{elapsed:?}");
    }
}
