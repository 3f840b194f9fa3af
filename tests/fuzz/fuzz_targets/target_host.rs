//! Fuzzes target host parsing and the egress verdict (`sallyport_core::egress`).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(sallyport_core::egress::Host::Ip(ip)) = sallyport_core::egress::parse_host(text) {
            let policy = sallyport_core::egress::EgressPolicy::new(vec!["10.0.0.0/8".parse().unwrap()], vec![]);
            let _ = policy.check(ip);
        }
    }
});
