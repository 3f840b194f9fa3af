//! Sans-io core of Sallyport: the decisions and wire formats every session goes through.
//!
//! This crate never does I/O: no sockets, no files, no clock, no DNS, no tokio. Time, randomness and
//! resolved addresses are parameters. That keeps the rules that guard the gateway (which addresses may be
//! dialled, who may connect to what, what bytes from the browser mean) small, testable and fuzzable.
//!
//! - [`egress`]: which target addresses may be dialled (SSRF rules), and parsing of every address encoding.
//! - [`policy`]: the [`policy::Authenticated`] → [`policy::Authorized`] proof values a connect requires.
//! - [`frames`]: the browser ↔ gateway terminal WebSocket protocol.
//! - [`display`]: the browser ↔ gateway desktop (RDP) stream: input events, display updates, damage.
//! - [`errors`]: the plain-words errors a user sees.
//! - [`mfa`]: TOTP codes and recovery codes.
//! - [`quic`]: the native client's QUIC stream preamble, frames and login/list messages.
//! - [`sso`]: the device sign-in's messages between the programs and the portal.

pub mod display;
pub mod egress;
pub mod errors;
pub mod frames;
pub mod mfa;
pub mod policy;
pub mod quic;
pub mod sso;
pub mod throttle;

#[cfg(test)]
mod garbage_tests {
    //! Deterministic garbage through every parser of untrusted text: errors, never panics. (The
    //! coverage-guided versions live in tests/fuzz.)

    /// A small xorshift generator, so the inputs are the same on every run.
    fn next(state: &mut u64) -> u64 {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        *state
    }

    #[test]
    fn garbage_never_panics_the_parsers() {
        const ALPHABET: &[u8] =
            b"{}[]\":,0123456789abcdefx.:%-_ \\typeconnectresizeusernamepassword\x00\xff";
        let policy = crate::egress::EgressPolicy::new(vec![], vec![]);
        let mut state = 0x5eed_u64;
        let mut parsed = 0;
        for _ in 0..20_000 {
            let len = (next(&mut state) % 64) as usize;
            let bytes: Vec<u8> = (0..len)
                .map(|_| ALPHABET[(next(&mut state) % ALPHABET.len() as u64) as usize])
                .collect();
            let text = String::from_utf8_lossy(&bytes);
            if crate::frames::parse_client_text(&text).is_ok() {
                parsed += 1;
            }
            if crate::display::parse_control(&text).is_ok() {
                parsed += 1;
            }
            let _ = crate::display::parse_input(&bytes);
            let _ = crate::display::parse_update(&bytes);
            if let Ok(crate::egress::Host::Ip(ip)) = crate::egress::parse_host(&text) {
                let _ = policy.check(ip);
            }
            // The QUIC stream start, with and without a valid magic in front.
            for start in [&bytes[..], &[b"SP\x01".as_slice(), &bytes].concat()] {
                if let Ok(Some((_, used))) = crate::quic::Preamble::parse(start) {
                    assert!(used <= crate::quic::MAX_PREAMBLE_LEN && used <= start.len());
                }
                let mut decoder = crate::quic::FrameDecoder::new(1024);
                decoder.extend(start);
                while let Ok(Some(frame)) = decoder.next_frame() {
                    let _ = frame.into_client_message();
                }
            }
        }
        // The alphabet is chosen so that garbage is mostly refused: a parser accepting most of it is broken.
        assert!(parsed < 100, "{parsed} garbage messages were accepted");
    }
}
