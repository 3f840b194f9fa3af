//! When the RDP session task acts on its own, sans-io: when the recording gets a keyframe of the
//! framebuffer, and when a resize the user asked for may go to the target. Time is a parameter (`now`);
//! the session task passes `Instant::now()` and sleeps until the instants this returns.

use std::time::{Duration, Instant};

use sallyport_core::display::DesktopSize;

/// How long after an activation, and after the first picture following it, before the gateway asks for a
/// new desktop size. xrdp (xorgxrdp) frees the shared memory of the old screen when it resizes; a resize
/// asked for while xrdp is still attaching the first one's makes xrdp drop the whole session ("Can't
/// attach to shared memory"), which happened when the browser's area settled right after connecting.
pub const RESIZE_SETTLE: Duration = Duration::from_millis(1500);

/// The session's timing decisions: keyframes and resizes.
#[derive(Debug, Clone)]
pub struct Pacer {
    keyframe_interval: Duration,
    last_keyframe: Instant,
    /// The framebuffer changed since the last keyframe.
    dirty_since_keyframe: bool,
    /// The size the user asked for last and the target was not yet asked for.
    resize_wanted: Option<DesktopSize>,
    /// When the stage was last (re)activated, and whether a picture came since.
    activated_at: Instant,
    drawn_since_activation: bool,
}

impl Pacer {
    /// A session activated at `now`, keyframed every `keyframe_interval` while it changes.
    pub fn new(now: Instant, keyframe_interval: Duration) -> Self {
        Pacer {
            keyframe_interval,
            last_keyframe: now,
            dirty_since_keyframe: false,
            resize_wanted: None,
            activated_at: now,
            drawn_since_activation: false,
        }
    }

    /// The stage was reactivated at `now`: a fresh framebuffer, to keyframe, and the resize settle
    /// starts again.
    pub fn reactivated(&mut self, now: Instant) {
        self.dirty_since_keyframe = true;
        self.activated_at = now;
        self.drawn_since_activation = false;
    }

    /// The target drew something.
    pub fn drawn(&mut self) {
        self.dirty_since_keyframe = true;
        self.drawn_since_activation = true;
    }

    /// When the next keyframe is due; `None` while nothing changed since the last one. A change is
    /// captured one interval after the last keyframe, even when the target goes quiet right after it.
    pub fn keyframe_due_at(&self) -> Option<Instant> {
        self.dirty_since_keyframe
            .then(|| self.last_keyframe + self.keyframe_interval)
    }

    /// Whether a keyframe is due at `now`.
    pub fn keyframe_due(&self, now: Instant) -> bool {
        self.keyframe_due_at().is_some_and(|due| now >= due)
    }

    /// A keyframe of everything drawn so far was taken at `now`.
    pub fn keyframe_taken(&mut self, now: Instant) {
        self.last_keyframe = now;
        self.dirty_since_keyframe = false;
    }

    /// The user's area changed to `size` (the newest size wins).
    pub fn want_resize(&mut self, size: DesktopSize) {
        self.resize_wanted = Some(size);
    }

    /// When a resize may be asked for: [`RESIZE_SETTLE`] after the activation once a picture came, or four
    /// times that for a target that draws nothing. `None` when no resize is wanted.
    pub fn resize_due_at(&self) -> Option<Instant> {
        self.resize_wanted.map(|_| self.resize_ready_at())
    }

    fn resize_ready_at(&self) -> Instant {
        let settle = if self.drawn_since_activation {
            RESIZE_SETTLE
        } else {
            RESIZE_SETTLE * 4
        };
        self.activated_at + settle
    }

    /// The size to ask the target for at `now`, if one is wanted and the desktop has settled; it is
    /// then no longer wanted.
    pub fn take_resize(&mut self, now: Instant) -> Option<DesktopSize> {
        if now < self.resize_ready_at() {
            return None;
        }
        self.resize_wanted.take()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const INTERVAL: Duration = Duration::from_secs(10);

    fn size(width: u16) -> DesktopSize {
        DesktopSize::clamped(width, 600)
    }

    #[test]
    fn keyframes_follow_changes_one_interval_apart() {
        let start = Instant::now();
        let mut pacer = Pacer::new(start, INTERVAL);
        assert_eq!(
            pacer.keyframe_due_at(),
            None,
            "nothing drawn, nothing to keyframe"
        );
        assert!(!pacer.keyframe_due(start + INTERVAL * 5));
        pacer.drawn();
        assert_eq!(pacer.keyframe_due_at(), Some(start + INTERVAL));
        assert!(!pacer.keyframe_due(start + INTERVAL - Duration::from_millis(1)));
        assert!(pacer.keyframe_due(start + INTERVAL));
        let taken = start + INTERVAL + Duration::from_secs(3);
        pacer.keyframe_taken(taken);
        assert_eq!(pacer.keyframe_due_at(), None);
        pacer.drawn();
        assert!(!pacer.keyframe_due(taken + INTERVAL / 2));
        assert!(pacer.keyframe_due(taken + INTERVAL));
    }

    #[test]
    fn a_reactivation_needs_a_keyframe() {
        let start = Instant::now();
        let mut pacer = Pacer::new(start, INTERVAL);
        pacer.reactivated(start + Duration::from_secs(1));
        assert_eq!(pacer.keyframe_due_at(), Some(start + INTERVAL));
    }

    #[test]
    fn resizes_wait_for_the_desktop_to_settle() {
        let start = Instant::now();
        let mut pacer = Pacer::new(start, INTERVAL);
        assert_eq!(pacer.resize_due_at(), None);
        assert_eq!(pacer.take_resize(start + RESIZE_SETTLE * 10), None);
        pacer.want_resize(size(1024));
        pacer.want_resize(size(1280));
        // Nothing drawn yet: four times the settle time.
        assert_eq!(pacer.resize_due_at(), Some(start + RESIZE_SETTLE * 4));
        assert_eq!(pacer.take_resize(start + RESIZE_SETTLE), None);
        pacer.drawn();
        assert_eq!(pacer.resize_due_at(), Some(start + RESIZE_SETTLE));
        assert_eq!(pacer.take_resize(start + RESIZE_SETTLE / 2), None);
        assert_eq!(pacer.take_resize(start + RESIZE_SETTLE), Some(size(1280)));
        assert_eq!(
            pacer.take_resize(start + RESIZE_SETTLE * 2),
            None,
            "asked once"
        );
    }

    #[test]
    fn a_reactivation_restarts_the_settle_time() {
        let start = Instant::now();
        let mut pacer = Pacer::new(start, INTERVAL);
        pacer.drawn();
        let again = start + Duration::from_secs(5);
        pacer.reactivated(again);
        pacer.want_resize(size(800));
        assert_eq!(pacer.take_resize(start + RESIZE_SETTLE * 2), None);
        assert_eq!(pacer.resize_due_at(), Some(again + RESIZE_SETTLE * 4));
        pacer.drawn();
        assert_eq!(pacer.take_resize(again + RESIZE_SETTLE), Some(size(800)));
    }
}
