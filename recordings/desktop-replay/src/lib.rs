//! Replays recorded desktop (RDP) sessions into frames, for the review TUI and for tests.
//!
//! A desktop recording (see `sallyport_recordings::DesktopEvent`) holds the decrypted server→client PDU
//! stream as the gateway decoded it, an `Activation` before each stretch of it (the desktop size and the
//! identifiers an ironrdp `ActiveStage` needs), and periodic keyframes of the gateway's framebuffer as PNG.
//! [`DesktopReplay::frame_at`] seeks: it starts from the last keyframe at or before the wanted time (or
//! from the activation before it, with a black desktop) and feeds the PDUs after it into a fresh
//! `ActiveStage`, so seeking costs at most one keyframe interval of RDP traffic. The gateway negotiates
//! only stateless bitmap codecs and no bulk compression, which is what makes a keyframe plus the PDUs
//! after it reproduce the live framebuffer.
//!
//! This crate is synchronous and does no I/O: events in, pixels out. It never depends on tokio or the
//! gateway's crates. Recordings are untrusted input: sizes are bounded and decoder failures are errors.

use ironrdp_displaycontrol::client::DisplayControlClient;
use ironrdp_dvc::DrdynvcClient;
use ironrdp_graphics::image_processing::PixelFormat;
use ironrdp_pdu::Action;
use ironrdp_session::image::DecodedImage;
use ironrdp_session::{ActiveStage, ActiveStageBuilder};
use ironrdp_svc::StaticChannelSet;
use sallyport_recordings::{DesktopEvent, Event, TimedEvent};

/// Most pixels a replayed desktop may have (the gateway's own limit).
pub const MAX_PIXELS: u32 = 16 * 1024 * 1024;

/// Why a recording does not replay.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplayError {
    /// No desktop activation before the wanted point.
    #[error("the recording has no desktop activation before {0} ms")]
    NotStarted(u64),
    /// A recorded size beyond the limit.
    #[error("a recorded desktop of {0}x{1} pixels is larger than replay allows")]
    TooLarge(u16, u16),
    /// A keyframe that does not decode or does not fit its desktop.
    #[error("keyframe at {at_ms} ms: {why}")]
    Keyframe {
        /// When.
        at_ms: u64,
        /// What was wrong.
        why: String,
    },
    /// The decoder refused a PDU.
    #[error("PDU at {at_ms} ms does not decode: {why}")]
    Pdu {
        /// When.
        at_ms: u64,
        /// What was wrong.
        why: String,
    },
}

/// A replayed desktop picture.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// Width in pixels.
    pub width: u16,
    /// Height in pixels.
    pub height: u16,
    /// Tightly packed opaque RGBA.
    pub rgba: Vec<u8>,
    /// The time of the keyframe replay started from, if any (else the activation's black desktop).
    pub from_keyframe_ms: Option<u64>,
    /// How many PDUs were decoded to get here.
    pub pdus_decoded: usize,
}

impl Frame {
    /// The RGB of one pixel.
    pub fn pixel(&self, x: u16, y: u16) -> Option<[u8; 3]> {
        if x >= self.width || y >= self.height {
            return None;
        }
        let i = (usize::from(y) * usize::from(self.width) + usize::from(x)) * 4;
        Some([self.rgba[i], self.rgba[i + 1], self.rgba[i + 2]])
    }
}

#[derive(Debug, Clone, Copy)]
struct Activation {
    width: u16,
    height: u16,
    io_channel_id: u16,
    user_channel_id: u16,
    share_id: u32,
    drdynvc_channel_id: Option<u16>,
}

impl Activation {
    /// The decoder's parameters from an activation event (`None` for any other event).
    fn of(event: &DesktopEvent) -> Option<Activation> {
        match *event {
            DesktopEvent::Activation {
                width,
                height,
                io_channel_id,
                user_channel_id,
                share_id,
                drdynvc_channel_id,
            } => Some(Activation {
                width,
                height,
                io_channel_id,
                user_channel_id,
                share_id,
                drdynvc_channel_id,
            }),
            _ => None,
        }
    }
}

/// The desktop events of one session, in order, ready to be replayed.
#[derive(Debug, Clone)]
pub struct DesktopReplay {
    events: Vec<(u64, DesktopEvent)>,
}

impl DesktopReplay {
    /// Keeps the desktop events of a session's decoded events.
    pub fn new(events: &[TimedEvent]) -> Self {
        DesktopReplay {
            events: events
                .iter()
                .filter_map(|e| match &e.event {
                    Event::Desktop(d) => Some((e.at_ms, d.clone())),
                    _ => None,
                })
                .collect(),
        }
    }

    /// When the last desktop event happened.
    pub fn duration_ms(&self) -> u64 {
        self.events.last().map_or(0, |(at, _)| *at)
    }

    /// The times of the recorded keyframes.
    pub fn keyframes(&self) -> Vec<u64> {
        self.events
            .iter()
            .filter(|(_, e)| matches!(e, DesktopEvent::Keyframe { .. }))
            .map(|(at, _)| *at)
            .collect()
    }

    /// The desktop as it was after everything recorded up to `at_ms` (inclusive).
    pub fn frame_at(&self, at_ms: u64) -> Result<Frame, ReplayError> {
        let end = self.events.partition_point(|(at, _)| *at <= at_ms);
        let events = &self.events[..end];
        // Start from the last keyframe (or activation) at or before the wanted time.
        let start = events
            .iter()
            .rposition(|(_, e)| {
                matches!(
                    e,
                    DesktopEvent::Keyframe { .. } | DesktopEvent::Activation { .. }
                )
            })
            .ok_or(ReplayError::NotStarted(at_ms))?;
        let activation = events[..=start]
            .iter()
            .rev()
            .find_map(|(_, e)| Activation::of(e))
            .ok_or(ReplayError::NotStarted(at_ms))?;
        let mut decoder = Decoder::new(activation)?;
        let mut from_keyframe_ms = None;
        if let (at, DesktopEvent::Keyframe { width, height, png }) = &events[start] {
            decoder.load_keyframe(*at, *width, *height, png)?;
            from_keyframe_ms = Some(*at);
        }
        for (at, event) in &events[start + 1..] {
            match event {
                DesktopEvent::Activation { .. } => {
                    // A reactivation: a new size and a black desktop, as the live session had. It
                    // keeps the dynamic channel when it names none.
                    let mut next = Activation::of(event).unwrap_or(activation);
                    next.drdynvc_channel_id =
                        next.drdynvc_channel_id.or(activation.drdynvc_channel_id);
                    decoder = Decoder::new(next)?.with_count(decoder.pdus);
                }
                DesktopEvent::ServerPdu { fast_path, data } => {
                    decoder.pdu(*at, *fast_path, data)?;
                }
                DesktopEvent::Keyframe { .. }
                | DesktopEvent::Input(_)
                | DesktopEvent::Resize { .. }
                | DesktopEvent::Clipboard { .. } => {}
            }
        }
        Ok(decoder.frame(from_keyframe_ms))
    }

    /// The last frame of the recording.
    pub fn final_frame(&self) -> Result<Frame, ReplayError> {
        self.frame_at(self.duration_ms())
    }
}

struct Decoder {
    stage: ActiveStage,
    image: DecodedImage,
    pdus: usize,
}

impl Decoder {
    fn new(a: Activation) -> Result<Decoder, ReplayError> {
        if a.width == 0 || a.height == 0 || u32::from(a.width) * u32::from(a.height) > MAX_PIXELS {
            return Err(ReplayError::TooLarge(a.width, a.height));
        }
        let mut static_channels = StaticChannelSet::new();
        if let Some(id) = a.drdynvc_channel_id {
            // The same channels as the live client, so channel PDUs are routed (and ignored) the same way.
            static_channels.insert(
                DrdynvcClient::new()
                    .with_dynamic_channel(DisplayControlClient::new(|_| Ok(Vec::new()))),
            );
            static_channels.attach_channel_id(std::any::TypeId::of::<DrdynvcClient>(), id);
        }
        let stage = ActiveStageBuilder {
            static_channels,
            user_channel_id: a.user_channel_id,
            io_channel_id: a.io_channel_id,
            message_channel_id: None,
            share_id: a.share_id,
            compression_type: None,
            enable_server_pointer: false,
            pointer_software_rendering: false,
        }
        .build();
        Ok(Decoder {
            stage,
            image: DecodedImage::new(PixelFormat::RgbA32, a.width, a.height),
            pdus: 0,
        })
    }

    fn with_count(mut self, pdus: usize) -> Decoder {
        self.pdus = pdus;
        self
    }

    fn load_keyframe(
        &mut self,
        at_ms: u64,
        width: u16,
        height: u16,
        png: &[u8],
    ) -> Result<(), ReplayError> {
        let bad = |why: String| ReplayError::Keyframe { at_ms, why };
        if (width, height) != (self.image.width(), self.image.height()) {
            return Err(bad(format!(
                "{width}x{height} does not match the desktop's {}x{}",
                self.image.width(),
                self.image.height()
            )));
        }
        let mut decoder = png::Decoder::new(std::io::Cursor::new(png));
        decoder.set_transformations(png::Transformations::EXPAND);
        // Bounded by the recorded (and checked) desktop size.
        decoder.set_limits(png::Limits {
            bytes: usize::from(width) * usize::from(height) * 4 + 1024,
        });
        let mut reader = decoder.read_info().map_err(|e| bad(e.to_string()))?;
        let info = reader.info();
        if (info.width, info.height) != (u32::from(width), u32::from(height))
            || info.color_type != png::ColorType::Rgba
            || info.bit_depth != png::BitDepth::Eight
        {
            return Err(bad("not an 8-bit RGBA picture of the desktop's size".into()));
        }
        let mut rgba = vec![0; reader.output_buffer_size().unwrap_or(0)];
        reader
            .next_frame(&mut rgba)
            .map_err(|e| bad(e.to_string()))?;
        // DecodedImage has no pixel setter: composite the keyframe over the whole desktop instead.
        let whole = ironrdp_pdu::geometry::ExclusiveRectangle {
            left: 0,
            top: 0,
            right: width,
            bottom: height,
        };
        self.stage
            .composite_rgba32(&mut self.image, [(whole, rgba)])
            .map_err(|e| bad(e.report().to_string()))?;
        Ok(())
    }

    fn pdu(&mut self, at_ms: u64, fast_path: bool, data: &[u8]) -> Result<(), ReplayError> {
        let action = if fast_path {
            Action::FastPath
        } else {
            Action::X224
        };
        self.stage
            .process(&mut self.image, action, data, None)
            .map_err(|e| ReplayError::Pdu {
                at_ms,
                why: e.report().to_string(),
            })?;
        self.pdus += 1;
        Ok(())
    }

    fn frame(self, from_keyframe_ms: Option<u64>) -> Frame {
        let mut rgba = self.image.data().to_vec();
        for pixel in rgba.chunks_exact_mut(4) {
            pixel[3] = 0xff;
        }
        Frame {
            width: self.image.width(),
            height: self.image.height(),
            rgba,
            from_keyframe_ms,
            pdus_decoded: self.pdus,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn only_an_activation_event_gives_the_decoder_parameters() {
        let event = DesktopEvent::Activation {
            width: 1024,
            height: 768,
            io_channel_id: 1003,
            user_channel_id: 1007,
            share_id: 0x0001_03ea,
            drdynvc_channel_id: Some(1008),
        };
        let activation = Activation::of(&event).unwrap();
        assert_eq!((activation.width, activation.height), (1024, 768));
        assert_eq!(
            (activation.io_channel_id, activation.user_channel_id),
            (1003, 1007)
        );
        assert_eq!(activation.share_id, 0x0001_03ea);
        assert_eq!(activation.drdynvc_channel_id, Some(1008));
        assert!(Activation::of(&DesktopEvent::Input(vec![1, 2])).is_none());
    }
}
