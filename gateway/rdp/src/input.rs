//! The browser's input events as RDP fast-path input, sans-io: scancodes, Unicode, pointer (clamped to
//! the desktop), wheel, Ctrl+Alt+Del, and "release everything" when the browser loses focus. The
//! [`Database`] remembers what is held so a release-all releases exactly that.

use ironrdp_input::{Database, MouseButton, MousePosition, Operation, Scancode, WheelRotations};
use ironrdp_pdu::input::fast_path::FastPathInputEvent;
use sallyport_core::display::InputEvent;

/// The fast-path events for `events` on a `width`×`height` desktop, in order.
pub(crate) fn to_fast_path(
    held: &mut Database,
    events: Vec<InputEvent>,
    width: u16,
    height: u16,
) -> Vec<FastPathInputEvent> {
    let clamp = |x: u16, y: u16| MousePosition {
        x: x.min(width.saturating_sub(1)),
        y: y.min(height.saturating_sub(1)),
    };
    let mut operations = Vec::with_capacity(events.len() * 2);
    let mut fastpath = Vec::new();
    for event in events {
        match event {
            InputEvent::Key { scancode, down } => {
                let code = Scancode::from_u16(scancode);
                operations.push(if down {
                    Operation::KeyPressed(code)
                } else {
                    Operation::KeyReleased(code)
                });
            }
            InputEvent::Unicode { ch, down } => operations.push(if down {
                Operation::UnicodeKeyPressed(ch)
            } else {
                Operation::UnicodeKeyReleased(ch)
            }),
            InputEvent::MouseMove { x, y } => operations.push(Operation::MouseMove(clamp(x, y))),
            InputEvent::MouseButton { button, down, x, y } => {
                operations.push(Operation::MouseMove(clamp(x, y)));
                if let Some(button) = MouseButton::from_web_button(button) {
                    operations.push(if down {
                        Operation::MouseButtonPressed(button)
                    } else {
                        Operation::MouseButtonReleased(button)
                    });
                }
            }
            InputEvent::Wheel { vertical, units } => {
                operations.push(Operation::WheelRotations(WheelRotations {
                    is_vertical: vertical,
                    rotation_units: units,
                }))
            }
            InputEvent::CtrlAltDel => {
                let keys = [0x1D, 0x38, 0xE053].map(Scancode::from_u16);
                operations.extend(keys.iter().map(|k| Operation::KeyPressed(*k)));
                operations.extend(keys.iter().rev().map(|k| Operation::KeyReleased(*k)));
            }
            InputEvent::ReleaseAll => {
                fastpath.extend(held.apply(std::mem::take(&mut operations)));
                fastpath.extend(held.release_all());
            }
        }
    }
    fastpath.extend(held.apply(operations));
    fastpath
}

#[cfg(test)]
#[allow(clippy::panic)]
mod tests {
    use ironrdp_pdu::input::fast_path::KeyboardFlags;

    use super::*;

    fn key_releases(events: &[FastPathInputEvent]) -> Vec<u8> {
        events
            .iter()
            .filter_map(|e| match e {
                FastPathInputEvent::KeyboardEvent(flags, code)
                    if flags.contains(KeyboardFlags::RELEASE) =>
                {
                    Some(*code)
                }
                _ => None,
            })
            .collect()
    }

    #[test]
    fn release_all_releases_what_is_held_and_only_that() {
        let mut held = Database::new();
        let down = to_fast_path(
            &mut held,
            vec![InputEvent::Key {
                scancode: 0x1E,
                down: true,
            }],
            800,
            600,
        );
        assert_eq!(down.len(), 1);
        assert!(key_releases(&down).is_empty());
        let released = to_fast_path(&mut held, vec![InputEvent::ReleaseAll], 800, 600);
        assert_eq!(key_releases(&released), vec![0x1E]);
        let nothing = to_fast_path(&mut held, vec![InputEvent::ReleaseAll], 800, 600);
        assert!(nothing.is_empty(), "{nothing:?}");
    }

    #[test]
    fn ctrl_alt_del_presses_and_releases_three_keys() {
        let mut held = Database::new();
        let events = to_fast_path(&mut held, vec![InputEvent::CtrlAltDel], 800, 600);
        assert_eq!(events.len(), 6);
        assert_eq!(key_releases(&events), vec![0x53, 0x38, 0x1D]);
    }

    #[test]
    fn the_pointer_stays_on_the_desktop() {
        let mut held = Database::new();
        let events = to_fast_path(
            &mut held,
            vec![InputEvent::MouseMove { x: 65535, y: 65535 }],
            800,
            600,
        );
        let [FastPathInputEvent::MouseEvent(pdu)] = events.as_slice() else {
            panic!("{events:?}");
        };
        assert_eq!((pdu.x_position, pdu.y_position), (799, 599));
    }
}
