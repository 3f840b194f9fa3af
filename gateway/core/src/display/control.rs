//! Desktop control messages as JSON text: what the browser asks (connect, resize, clipboard), what the
//! gateway answers beside the shared terminal control (clipboard, clipboard refused), the clipboard
//! policy and the validated connect request.

use serde::{Deserialize, Serialize};

use super::input::parse_input;
use super::{InputEvent, MAX_CLIPBOARD_BYTES, MAX_DESKTOP_TEXT, MAX_DIMENSION, MIN_DIMENSION};
use crate::frames::{Credential, FrameError};

/// A control message from the desktop client.
#[derive(Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum DesktopControl {
    /// Opens the desktop. Must come first, exactly once.
    Connect {
        /// The account on the target.
        username: String,
        /// Its password.
        password: String,
        /// The Windows domain, if any.
        #[serde(default)]
        domain: Option<String>,
        /// Initial desktop width in pixels.
        width: u16,
        /// Initial desktop height in pixels.
        height: u16,
    },
    /// The browser's desktop area changed size.
    Resize {
        /// Width in pixels.
        width: u16,
        /// Height in pixels.
        height: u16,
    },
    /// The user's clipboard text, for the target's clipboard.
    Clipboard {
        /// The text.
        text: String,
    },
}

/// Which way clipboard text may cross a desktop session, and how much. Text only: files and pictures
/// never cross.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClipboardPolicy {
    /// The user's clipboard text may reach the target.
    pub to_target: bool,
    /// The target's clipboard text may reach the user.
    pub to_client: bool,
    /// Largest text either way, in UTF-8 bytes (at most [`MAX_CLIPBOARD_BYTES`]).
    pub max_bytes: usize,
}

impl ClipboardPolicy {
    /// No clipboard either way.
    pub const OFF: ClipboardPolicy = ClipboardPolicy {
        to_target: false,
        to_client: false,
        max_bytes: 0,
    };

    /// Whether any clipboard text may cross.
    pub fn enabled(&self) -> bool {
        (self.to_target || self.to_client) && self.max_bytes > 0
    }

    /// The size cap, never above [`MAX_CLIPBOARD_BYTES`].
    pub fn cap(&self) -> usize {
        self.max_bytes.min(MAX_CLIPBOARD_BYTES)
    }
}

impl Default for ClipboardPolicy {
    /// Both ways, up to 256 KiB.
    fn default() -> Self {
        ClipboardPolicy {
            to_target: true,
            to_client: true,
            max_bytes: 256 * 1024,
        }
    }
}

/// A desktop-only message from the gateway to the client (beside the shared
/// [`ServerControl`](crate::frames::ServerControl)).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum DesktopServerControl {
    /// Text copied on the target, for the user's clipboard.
    Clipboard {
        /// The text.
        text: String,
    },
    /// A clipboard transfer the gateway refused (policy or size), in plain words; the session goes on.
    ClipboardRefused {
        /// Why.
        message: String,
    },
}

impl DesktopServerControl {
    /// The JSON text sent to the client.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| {
            r#"{"type":"clipboard_refused","message":"internal error"}"#.to_owned()
        })
    }
}

impl std::fmt::Debug for DesktopControl {
    // Credentials never reach a log through Debug.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DesktopControl::Connect {
                username,
                width,
                height,
                ..
            } => f
                .debug_struct("Connect")
                .field("username", username)
                .field("width", width)
                .field("height", height)
                .finish_non_exhaustive(),
            DesktopControl::Resize { width, height } => f
                .debug_struct("Resize")
                .field("width", width)
                .field("height", height)
                .finish(),
            // Clipboard text never reaches a log either; its size does.
            DesktopControl::Clipboard { text } => f
                .debug_struct("Clipboard")
                .field("bytes", &text.len())
                .finish_non_exhaustive(),
        }
    }
}

/// A desktop size in pixels, clamped to what the display control channel accepts (even width).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DesktopSize {
    /// Width.
    pub width: u16,
    /// Height.
    pub height: u16,
}

impl DesktopSize {
    /// Clamps a size a client reported.
    pub fn clamped(width: u16, height: u16) -> Self {
        DesktopSize {
            width: width.clamp(MIN_DIMENSION, MAX_DIMENSION) & !1,
            height: height.clamp(MIN_DIMENSION, MAX_DIMENSION),
        }
    }
}

/// A validated desktop connect request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DesktopConnectRequest {
    /// The account on the target.
    pub username: String,
    /// The domain, if any.
    pub domain: Option<String>,
    /// The password (always [`Credential::Password`]).
    pub credential: Credential,
    /// Initial size.
    pub size: DesktopSize,
}

/// Parses a text (control) message from a desktop client.
pub fn parse_control(text: &str) -> Result<DesktopControl, FrameError> {
    if text.len() > crate::frames::MAX_CONTROL_LEN {
        return Err(FrameError::TooLarge(text.len()));
    }
    serde_json::from_str(text).map_err(|e| FrameError::Malformed(e.to_string()))
}

/// Validates a connect's fields.
pub fn connect_request(control: DesktopControl) -> Result<DesktopConnectRequest, FrameError> {
    let DesktopControl::Connect {
        username,
        password,
        domain,
        width,
        height,
    } = control
    else {
        return Err(FrameError::Malformed(
            "the first message must be a connect".into(),
        ));
    };
    let valid = |s: &str| !s.is_empty() && s.len() <= 256 && !s.chars().any(char::is_control);
    if !valid(&username) {
        return Err(FrameError::BadUsername);
    }
    if domain.as_deref().is_some_and(|d| !valid(d)) {
        return Err(FrameError::BadUsername);
    }
    if password.is_empty() || password.len() > 1024 {
        return Err(FrameError::BadCredential);
    }
    Ok(DesktopConnectRequest {
        username,
        domain,
        credential: Credential::Password(password),
        size: DesktopSize::clamped(width, height),
    })
}

/// A desktop client message after validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DesktopMessage {
    /// Open the desktop.
    Connect(DesktopConnectRequest),
    /// The browser's area changed size.
    Resize(DesktopSize),
    /// Keyboard and mouse.
    Input(Vec<InputEvent>),
    /// The user's clipboard text (at most [`MAX_CLIPBOARD_BYTES`]).
    Clipboard(String),
}

/// Parses a text message of the desktop stream. Clipboard messages may be longer than other control
/// messages (up to [`MAX_DESKTOP_TEXT`]); the rest keep the control limit.
pub fn parse_desktop_text(text: &str) -> Result<DesktopMessage, FrameError> {
    if text.len() > MAX_DESKTOP_TEXT {
        return Err(FrameError::TooLarge(text.len()));
    }
    let control: DesktopControl =
        serde_json::from_str(text).map_err(|e| FrameError::Malformed(e.to_string()))?;
    if text.len() > crate::frames::MAX_CONTROL_LEN
        && !matches!(control, DesktopControl::Clipboard { .. })
    {
        return Err(FrameError::TooLarge(text.len()));
    }
    match control {
        DesktopControl::Clipboard { text } => {
            if text.len() > MAX_CLIPBOARD_BYTES {
                return Err(FrameError::TooLarge(text.len()));
            }
            Ok(DesktopMessage::Clipboard(text))
        }
        DesktopControl::Resize { width, height } => {
            Ok(DesktopMessage::Resize(DesktopSize::clamped(width, height)))
        }
        connect @ DesktopControl::Connect { .. } => {
            Ok(DesktopMessage::Connect(connect_request(connect)?))
        }
    }
}

/// Parses a binary message of the desktop stream (input events).
pub fn parse_desktop_binary(bytes: &[u8]) -> Result<DesktopMessage, FrameError> {
    parse_input(bytes).map(DesktopMessage::Input)
}
