//! The clock seam: a monotonic [`Instant`] for deadlines and a wall clock for
//! fleet-consistent absolute expiries.
//!
//! Two readings are needed because they answer different questions. Deadlines
//! inside one process ("has this directive expired?") must never jump when NTP
//! steps the wall clock, so they use the monotonic [`Instant`]. Expiries shared
//! by a fleet ("off at 12:00 UTC everywhere") can only be expressed on the wall
//! clock, so decoders convert once, at decode time, from wall to monotonic.

use std::fmt;
use std::ops::{Add, Sub};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// A point on a process-local monotonic timeline, in nanoseconds since the
/// clock's origin.
///
/// Arithmetic saturates instead of panicking or wrapping: a far-future expiry
/// (`Instant + huge Duration`) pins to [`Instant::MAX`], and an interval that
/// would be negative is zero.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Instant(u64);

impl Instant {
    /// The origin of the timeline.
    pub const ZERO: Instant = Instant(0);
    /// The latest representable instant; "never" for expiry purposes.
    pub const MAX: Instant = Instant(u64::MAX);

    /// Builds an instant from nanoseconds since the origin.
    pub const fn from_nanos(nanos: u64) -> Self {
        Instant(nanos)
    }

    /// Nanoseconds since the origin.
    pub const fn as_nanos(self) -> u64 {
        self.0
    }

    /// `self + d`, pinned to [`Instant::MAX`].
    #[must_use]
    pub fn saturating_add(self, d: Duration) -> Instant {
        Instant(self.0.saturating_add(duration_nanos(d)))
    }

    /// `self - d`, pinned to [`Instant::ZERO`].
    pub fn saturating_sub(self, d: Duration) -> Instant {
        Instant(self.0.saturating_sub(duration_nanos(d)))
    }

    /// Time from `earlier` to `self`, zero when `earlier` is later.
    #[must_use]
    pub fn saturating_duration_since(self, earlier: Instant) -> Duration {
        Duration::from_nanos(self.0.saturating_sub(earlier.0))
    }
}

impl fmt::Debug for Instant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Instant({:?})", Duration::from_nanos(self.0))
    }
}

impl Add<Duration> for Instant {
    type Output = Instant;
    fn add(self, d: Duration) -> Instant {
        self.saturating_add(d)
    }
}

impl Sub<Duration> for Instant {
    type Output = Instant;
    fn sub(self, d: Duration) -> Instant {
        self.saturating_sub(d)
    }
}

impl Sub<Instant> for Instant {
    type Output = Duration;
    fn sub(self, earlier: Instant) -> Duration {
        self.saturating_duration_since(earlier)
    }
}

fn duration_nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// A source of time. Implementations must be cheap and thread-safe: the
/// evaluator's callers read `now()` once per request.
///
/// The only supertraits are the seed's, `Send + Sync`; a clock need not be
/// `Debug`. `dyn Clock` itself is `Debug` (it prints `Clock`), so structs
/// holding an `Arc<dyn Clock>` can still derive `Debug`.
pub trait Clock: Send + Sync {
    /// The monotonic time. Never goes backwards.
    fn now(&self) -> Instant;
    /// The wall-clock time in nanoseconds since the Unix epoch. May jump.
    fn unix_nanos(&self) -> u64;

    /// Whether this clock reads the OS clocks on the one process-wide
    /// timeline every [`SystemClock`] shares, so that any two such clocks
    /// are interchangeable (an [`Instant`] of one means the same moment on
    /// the other). `false` unless a clock says otherwise: a test clock, or
    /// one that offsets or scales time, keeps its own timeline. Lets a
    /// process share work done against one clock with users of another
    /// (the etcd store shares decodes between its stores; see
    /// `osproxy_etcd`). A provided method, so existing implementations
    /// compile unchanged.
    fn is_system(&self) -> bool {
        false
    }
}

impl fmt::Debug for dyn Clock + '_ {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Clock")
    }
}

/// The real clock: the only code in the workspace that reads the OS clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

/// The process-wide monotonic origin, fixed at first use so every
/// [`SystemClock`] shares one timeline.
fn monotonic_origin() -> std::time::Instant {
    static ORIGIN: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    #[allow(clippy::disallowed_methods)] // the one sanctioned reader of the OS clock
    *ORIGIN.get_or_init(std::time::Instant::now)
}

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        let origin = monotonic_origin();
        #[allow(clippy::disallowed_methods)] // the one sanctioned reader of the OS clock
        let elapsed = std::time::Instant::now().saturating_duration_since(origin);
        // Start at 1 ns so that `Instant::ZERO` stays "before anything happened".
        Instant(duration_nanos(elapsed).saturating_add(1))
    }

    fn unix_nanos(&self) -> u64 {
        #[allow(clippy::disallowed_methods)] // the one sanctioned reader of the OS clock
        let now = std::time::SystemTime::now();
        now.duration_since(std::time::UNIX_EPOCH)
            .map(duration_nanos)
            .unwrap_or(0)
    }

    fn is_system(&self) -> bool {
        true
    }
}

/// A clock that moves only when told to; for tests and simulations.
///
/// Both readings advance together, so converting a wall-clock expiry to the
/// monotonic timeline behaves exactly as with the real clock.
///
/// Unlike the seed's (whose wall reading is its monotonic one, starting at
/// 0), the wall clock starts at 2024-01-01T00:00:00Z, so that RFC 3339
/// expiries decode against a realistic date; [`ManualClock::default`] is the
/// same as [`ManualClock::new`].
#[derive(Debug)]
pub struct ManualClock {
    mono: AtomicU64,
    wall: AtomicU64,
}

/// The wall time a [`ManualClock::new`] starts at: 2024-01-01T00:00:00Z.
const MANUAL_CLOCK_EPOCH_UNIX_NANOS: u64 = 1_704_067_200 * 1_000_000_000;

impl Default for ManualClock {
    /// The same as [`ManualClock::new`].
    fn default() -> Self {
        ManualClock::new()
    }
}

impl ManualClock {
    /// A clock at monotonic [`Instant::ZERO`] and wall time 2024-01-01T00:00:00Z.
    #[must_use]
    pub fn new() -> Self {
        Self::at_unix_nanos(MANUAL_CLOCK_EPOCH_UNIX_NANOS)
    }

    /// A clock at monotonic [`Instant::ZERO`] and the given wall time.
    pub fn at_unix_nanos(unix_nanos: u64) -> Self {
        ManualClock {
            mono: AtomicU64::new(0),
            wall: AtomicU64::new(unix_nanos),
        }
    }

    /// Moves both readings forward by `d` (saturating).
    pub fn advance(&self, d: Duration) {
        let n = duration_nanos(d);
        saturating_fetch_add(&self.mono, n);
        saturating_fetch_add(&self.wall, n);
    }

    /// Steps only the wall clock, as NTP may; the monotonic reading stays put.
    pub fn set_unix_nanos(&self, unix_nanos: u64) {
        self.wall.store(unix_nanos, Ordering::SeqCst);
    }
}

fn saturating_fetch_add(cell: &AtomicU64, n: u64) {
    let _ = cell.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |v| {
        Some(v.saturating_add(n))
    });
}

impl Clock for ManualClock {
    fn now(&self) -> Instant {
        Instant(self.mono.load(Ordering::SeqCst))
    }

    fn unix_nanos(&self) -> u64 {
        self.wall.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instant_arithmetic_saturates() {
        assert_eq!(Instant::MAX + Duration::from_secs(1), Instant::MAX);
        assert_eq!(Instant::ZERO - Duration::from_secs(1), Instant::ZERO);
        assert_eq!(Instant::ZERO - Instant::MAX, Duration::ZERO);
        assert_eq!(Instant::ZERO + Duration::MAX, Instant::MAX);
        let t = Instant::from_nanos(10);
        assert_eq!((t + Duration::from_nanos(5)) - t, Duration::from_nanos(5));
    }

    #[test]
    fn manual_clock_moves_only_when_told() {
        let c = ManualClock::new();
        let (m, w) = (c.now(), c.unix_nanos());
        assert_eq!(c.now(), m);
        c.advance(Duration::from_secs(3));
        assert_eq!(c.now() - m, Duration::from_secs(3));
        assert_eq!(c.unix_nanos() - w, 3_000_000_000);
        assert_eq!(
            ManualClock::default().unix_nanos(),
            ManualClock::new().unix_nanos()
        );
        let as_dyn: &dyn Clock = &c;
        assert_eq!(format!("{as_dyn:?}"), "Clock");
        c.set_unix_nanos(5);
        assert_eq!(c.unix_nanos(), 5);
        assert_eq!(c.now() - m, Duration::from_secs(3));
    }

    #[test]
    fn system_clock_is_monotonic_and_near_wall_time() {
        let c = SystemClock;
        let a = c.now();
        let b = c.now();
        assert!(b >= a);
        assert!(a > Instant::ZERO);
        // After 2020-01-01 and before 2200-01-01.
        let wall = c.unix_nanos();
        assert!(wall > 1_577_836_800 * 1_000_000_000);
        assert!(wall < 7_258_118_400 * 1_000_000_000);
    }
}
